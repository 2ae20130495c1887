#!/usr/bin/env bash
# Diff speed against the read-speed yardstick, in one run (make perf-diff):
#   1. generates two ~0.9 GB BF16 llama-shaped models with different seeds (every tensor
#      differs: the worst case for the diff) unless present,
#   2. times ../shared/perf/readpass over both files and `kensa diff` three times,
#      alternating, and prints wall times, the ratio and kensa's peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${PERFDIR:-/tmp/kensa-perf}
b=${PERFDIR2:-/tmp/kensa-perf2}
[ -f "$a/perf-llama-bf16/model.safetensors" ] || go run ./testdata/gen -perf -out "$a"
[ -f "$b/perf-llama-bf16/model.safetensors" ] || go run ./testdata/gen -perf -seed 2 -out "$b"
go build -o "$a/kensa" ./cmd/kensa
readpass=../shared/perf/readpass
if [ ! -d "$readpass" ]; then
  echo "perf-diff: ../shared/perf/readpass not found; cannot measure the yardstick" >&2
  exit 1
fi
(cd "$readpass" && go build -o "$a/readpass" .)
cat "$a/perf-llama-bf16/model.safetensors" "$b/perf-llama-bf16/model.safetensors" > /dev/null
for i in 1 2 3; do
  r1=$("$a/readpass" "$a/perf-llama-bf16/model.safetensors" | sed -E 's/.* in ([0-9.]+) s.*/\1/')
  r2=$("$a/readpass" "$b/perf-llama-bf16/model.safetensors" | sed -E 's/.* in ([0-9.]+) s.*/\1/')
  s=$(date +%s.%N)
  /usr/bin/env time -f "%M" -o "$a/mem-diff" "$a/kensa" diff -q --no-hash --format json -o "$a/diff.json" "$a/perf-llama-bf16" "$b/perf-llama-bf16" || true
  e=$(date +%s.%N)
  python3 -c "import sys; r=float(sys.argv[1])+float(sys.argv[2]); k=float(sys.argv[4])-float(sys.argv[3]); print(f'readpass both {r:.3f} s   kensa diff {k:.2f} s   ratio {k/r:.1f}x   peak RSS {int(sys.argv[5])//1024} MiB')" "$r1" "$r2" "$s" "$e" "$(cat "$a/mem-diff")"
done
