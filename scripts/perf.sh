#!/usr/bin/env bash
# Scan speed against the read-speed yardstick, in one run (make perf).
#   1. generates the ~0.9 GB BF16 llama-shaped model once (testdata/gen -perf),
#   2. reads it once to have it page-cached,
#   3. times ../shared/perf/readpass (one bare pass over the mapped file, all cores) and
#      `kensa scan` (all data-free detectors) three times each, alternating,
#   4. prints wall times, the ratio, and kensa's peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PERFDIR:-/tmp/kensa-perf}
model="$dir/perf-llama-bf16"
if [ ! -f "$model/model.safetensors" ]; then
  go run ./testdata/gen -perf -out "$dir"
fi
go build -o "$dir/kensa" ./cmd/kensa
readpass=../shared/perf/readpass
if [ ! -d "$readpass" ]; then
  echo "perf: ../shared/perf/readpass not found; cannot measure the yardstick" >&2
  exit 1
fi
(cd "$readpass" && go build -o "$dir/readpass" .)
cat "$model/model.safetensors" > /dev/null
best_r=999; best_k=999; best_n=999
secs() { python3 -c 'import sys; print(sys.argv[1])' "$1" 2>/dev/null || echo "$1"; }
for i in 1 2 3; do
  r=$("$dir/readpass" "$model/model.safetensors" | sed -E 's/.* in ([0-9.]+) s.*/\1/')
  s=$(date +%s.%N)
  /usr/bin/env time -f "%M" -o "$dir/mem" "$dir/kensa" scan -q --no-progress --format json -o "$dir/report.json" "$model" || true
  e=$(date +%s.%N)
  "$dir/kensa" scan --no-hash -q --no-progress --format json -o "$dir/report-nohash.json" "$model" || true
  f=$(date +%s.%N)
  k=$(echo "$e - $s" | bc); n=$(echo "$f - $e" | bc)
  echo "run $i: readpass ${r}s  kensa scan ${k}s  kensa scan --no-hash ${n}s"
  best_r=$(echo "if ($r < $best_r) $r else $best_r" | bc)
  best_k=$(echo "if ($k < $best_k) $k else $best_k" | bc)
  best_n=$(echo "if ($n < $best_n) $n else $best_n" | bc)
done
size=$(stat -c %s "$model/model.safetensors")
echo "model: $size bytes ($model)"
echo "best of 3: readpass ${best_r}s"
echo "  kensa scan            ${best_k}s = $(echo "scale=2; $best_k / $best_r" | bc)x readpass (includes the SHA-256 of the file)"
echo "  kensa scan --no-hash  ${best_n}s = $(echo "scale=2; $best_n / $best_r" | bc)x readpass (target <= 3x)"
echo "kensa peak RSS: $(cat "$dir/mem") KiB (most of it the memory-mapped file pages it read; the heap stays at a few MB per worker)"
