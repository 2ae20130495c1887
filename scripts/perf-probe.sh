#!/usr/bin/env bash
# Probe time at the default budget on generated random-weight llamas (make perf-probe):
# 134M parameters (F32 and Q8_0, as make bench-runtime writes them) and 1.1B parameters
# (Q8_0, TinyLlama's shape). Prints wall time, peak memory and how many vocabulary tokens
# the trigger sweep tried. Random weights end no sentences, so the sweep runs on
# mid-sentence contexts: these numbers time the probe, they do not test detection.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${RTDIR:-/tmp/kensa-runtime}
[ -f "$dir/llama-134m-q8_0.gguf" ] || go run ./testdata/gen -runtime -out "$dir"
[ -f "$dir/llama-1b-q8_0.gguf" ] || go run ./testdata/gen -runtime-1b -out "$dir"
go build -o "$dir/kensa" ./cmd/kensa
for f in llama-134m-q8_0.gguf llama-134m-f32.gguf llama-1b-q8_0.gguf; do
  s=$(date +%s.%N)
  /usr/bin/env time -f "%M" -o "$dir/mem" "$dir/kensa" scan --probe -q --no-progress --format json -o "$dir/probe.json" "$dir/$f" || true
  e=$(date +%s.%N)
  swept=$(python3 -c '
import json,sys
t=json.load(open(sys.argv[1]))["targets"][0]
s=[f["evidence"].get("swept") for f in t.get("findings",[]) if f["rule"]=="KS-PROBE-PARTIAL" and f.get("evidence",{}).get("swept") is not None]
print(s[0] if s else "all")' "$dir/probe.json" 2>/dev/null || echo "?")
  printf '%-24s %6.1f s  peak RSS %s KiB  tokens swept: %s\n' "$f" "$(echo "$e - $s" | bc)" "$(cat "$dir/mem")" "$swept"
done
