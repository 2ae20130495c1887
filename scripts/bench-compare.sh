#!/usr/bin/env bash
# kensa's runtime against llama.cpp on the same generated files, side by side in one run
# (make bench-compare). Writes the 134M F32 / Q8_0 / Q4_K_M and 1.1B Q4_K_M llamas if they
# are missing (go run ./testdata/gen), then runs `kensa bench` and, when LLAMA_BENCH names a
# llama-bench binary built by the user, llama-bench with the same prompt and decode lengths
# and thread counts. kensa never builds or ships llama.cpp: point LLAMA_BENCH at your own.
#
#   LLAMA_BENCH=~/llama.cpp/build/bin/llama-bench make bench-compare
#   THREADS="1 2" PROMPT=64 GEN=32 FILES="llama-134m-q8_0.gguf" make bench-compare
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${RTDIR:-/tmp/kensa-runtime}
threads=${THREADS:-"1 2"}
pp=${PROMPT:-64}
tg=${GEN:-32}
files=${FILES:-"llama-134m-f32.gguf llama-134m-q8_0.gguf llama-134m-q4_k_m.gguf llama-1b-q4_k_m.gguf"}
[ -f "$dir/llama-134m-q4_k_m.gguf" ] || go run ./testdata/gen -runtime -out "$dir"
case "$files" in *llama-1b-q4_k_m*) [ -f "$dir/llama-1b-q4_k_m.gguf" ] || go run ./testdata/gen -runtime-1b -out "$dir" ;; esac
case "$files" in *llama-7b*) [ -f "$dir/llama-7b-q4_0.gguf" ] || go run ./testdata/gen -runtime-7b -out "$dir" ;; esac
go build -o "$dir/kensa" ./cmd/kensa
printf '%-24s %3s  %-7s %12s %12s  %s\n' file thr test kensa_t/s llama_t/s kensa/llama
for f in $files; do
  for t in $threads; do
    k=$("$dir/kensa" bench -j "$t" --prompt "$pp" --gen "$tg" --reps 2 --format json "$dir/$f")
    l=""
    if [ -n "${LLAMA_BENCH:-}" ]; then
      l=$("$LLAMA_BENCH" -m "$dir/$f" -t "$t" -p "$pp" -n "$tg" -r 2 -o json 2>/dev/null || true)
    fi
    python3 - "$f" "$t" "$k" "$l" <<'PY'
import json, sys
f, t, k, l = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
ll = {}
if l.strip():
    for r in json.loads(l):
        name = "pp%d" % r["n_prompt"] if r.get("n_gen", 0) == 0 else "tg%d" % r["n_gen"]
        ll[name] = r["avg_ts"]
for r in k:
    lt = ll.get(r["test"])
    ratio = "%.0f%%" % (100 * r["avg_ts"] / lt) if lt else "-"
    print("%-24s %3s  %-7s %12.1f %12s  %s" % (f, t, r["test"], r["avg_ts"], "%.1f" % lt if lt else "-", ratio))
PY
  done
done
