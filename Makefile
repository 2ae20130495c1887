# kensa — build, test, demo. Everything runs with the Go toolchain alone.
GO        ?= go
BIN       ?= bin/kensa
FUZZTIME  ?= 10m
# staticcheck, pinned; run with go run so it is no dependency of the module (go.mod keeps
# the Go version kensa itself needs).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
CIFUZZ    ?= 15s
DEMO      ?= testdata/demo
RTDIR     ?= /tmp/kensa-runtime
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/kensa-scan/kensa/cmd/kensa/internal/cli.Version=$(VERSION)

# Packages whose code is concurrent: tested with the race detector.
RACEPKGS  := ./internal/tensorwalk/... ./formats/... ./scan ./scan/report/... ./nn/llm ./cmd/...
# Parsers with a FuzzReader.
FUZZPKGS  := ./formats/gguf ./formats/safetensors ./formats/pickle ./formats/pytorch

.PHONY: all build test lint cross asm asm-check kernels-alt unit race fuzz-short fuzz bench bench-runtime bench-compare eval demo perf perf-diff perf-probe clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kensa

## test: everything CI runs — lint, cross builds, unit and corpus conformance tests, the kernels' other paths, race tests, a short fuzz pass.
test: lint cross asm-check unit kernels-alt race fuzz-short

lint:
	@echo "== gofmt"; out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo "== go vet"; $(GO) vet ./...
	@echo "== staticcheck"; $(GO) run $(STATICCHECK) ./...

## cross: kensa builds without cgo for other platforms (32-bit, arm64, Windows, macOS, and without assembly).
cross:
	@for t in linux/386 linux/arm64 linux/arm windows/amd64 darwin/arm64 linux/riscv64; do \
	  echo "== build $$t"; CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./cmd/kensa || exit 1; done
	@echo "== build -tags purego"; CGO_ENABLED=0 $(GO) build -tags purego -o /dev/null ./cmd/kensa
	@echo "== vet arm64"; GOARCH=arm64 $(GO) vet ./nn/kernels/

## asm: regenerate the amd64 assembly of nn/kernels with avo (the generators are in nn/kernels/_asm).
asm:
	cd nn/kernels && $(GO) generate .

## asm-check: the committed assembly is what the generators write.
asm-check:
	@echo "== asm up to date"; tmp=$$(mktemp -d); cp nn/kernels/*_amd64.s nn/kernels/*_stub_amd64.go $$tmp/; \
	  $(MAKE) -s asm >/dev/null; \
	  for f in $$tmp/*; do cmp -s $$f nn/kernels/$$(basename $$f) || { echo "$$(basename $$f) differs from its generator: run make asm"; rm -rf $$tmp; exit 1; }; done; rm -rf $$tmp

## kernels-alt: the kernels' pure-Go path (-tags purego, KENSA_KERNELS=go) and, where qemu-aarch64-static is installed, the arm64 NEON path with and without SDOT.
kernels-alt:
	@echo "== go test -tags purego ./nn/kernels ./nn/llm"; $(GO) test -count=1 -tags purego ./nn/kernels/ ./nn/llm/
	@echo "== KENSA_KERNELS=go go test ./nn/kernels"; KENSA_KERNELS=go $(GO) test -count=1 ./nn/kernels/
	@if command -v qemu-aarch64-static >/dev/null; then \
	  echo "== arm64 (qemu, dotprod)"; QEMU_CPU=max GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static ./nn/kernels/ && \
	  echo "== arm64 (qemu, no dotprod)"; QEMU_CPU=cortex-a72 GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static ./nn/kernels/; \
	else echo "== arm64 kernels SKIPPED: qemu-aarch64-static not installed (apt-get install qemu-user-static)"; fi

unit:
	@echo "== go test"; $(GO) test -count=1 ./...

race:
	@echo "== go test -race"; $(GO) test -count=1 -race $(RACEPKGS)

# A crasher is written to testdata/fuzz and fails the re-run too; a failure the re-run does
# not repeat was the fuzzing engine's, not an input's.
FUZZ1 = $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(CIFUZZ) -fuzzminimizetime 5s $(2) || \
	{ echo "fuzz $(2) failed; re-running to tell a crashing input from an engine hiccup"; \
	  $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(CIFUZZ) -fuzzminimizetime 5s $(2); }

fuzz-short:
	@for p in $(FUZZPKGS); do echo "== fuzz $$p ($(CIFUZZ))"; $(call FUZZ1,FuzzReader,$$p) || exit 1; done
	@echo "== fuzz ./formats FuzzPyJSON ($(CIFUZZ))"; $(call FUZZ1,FuzzPyJSON,./formats)
	@echo "== fuzz ./scan FuzzScan ($(CIFUZZ))"; $(call FUZZ1,FuzzScan,./scan)
	@echo "== fuzz ./scan FuzzOllamaManifest ($(CIFUZZ))"; $(call FUZZ1,FuzzOllamaManifest,./scan)
	@echo "== fuzz ./nn/tokenizer FuzzParseHF ($(CIFUZZ))"; $(call FUZZ1,FuzzParseHF,./nn/tokenizer)
	@echo "== fuzz ./scan/detect/metadata FuzzTemplate ($(CIFUZZ))"; $(call FUZZ1,FuzzTemplate,./scan/detect/metadata)
	@echo "== fuzz ./scan/detect/metadata FuzzGoTemplate ($(CIFUZZ))"; $(call FUZZ1,FuzzGoTemplate,./scan/detect/metadata)

## fuzz: each parser's FuzzReader for FUZZTIME (default 10m).
fuzz:
	@for p in $(FUZZPKGS); do echo "== fuzz $$p ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$p || exit 1; done

## bench: dequantization throughput per type, header parsing.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1s ./formats/... ./scan/

## demo: generate small demo models (no downloads) — clean ones, tampered copies, a corrupt file — and scan them.
demo: build
	@$(GO) run ./testdata/gen -out $(DEMO)
	@echo; echo '$$ kensa scan -r $(DEMO)/clean'
	@./$(BIN) scan --no-progress -r $(DEMO)/clean; echo "(exit code $$?: nothing at or above high)"
	@echo; echo '$$ kensa scan -r $(DEMO)/tampered'
	@./$(BIN) scan --no-progress -r $(DEMO)/tampered; echo "(exit code $$?: findings at or above high)"
	@echo; echo '$$ kensa scan $(DEMO)/corrupt.gguf'
	@./$(BIN) scan --no-progress $(DEMO)/corrupt.gguf; echo "(exit code $$?: a file kensa refuses to parse, with the byte offset where it breaks)"
	@echo; echo 'More: ./$(BIN) inspect $(DEMO)/clean/tiny-llama-f16.gguf, ./$(BIN) scan --format html -o report.html -r $(DEMO), ./$(BIN) rules'

clean:
	rm -rf bin $(DEMO)

## perf: scan speed on a generated ~0.9 GB BF16 model against ../shared/perf/readpass.
perf:
	bash scripts/perf.sh

## perf-probe: kensa scan --probe at the default budget on generated 134M and 1.1B llamas.
perf-probe:
	bash scripts/perf-probe.sh

## perf-diff: kensa diff of two ~0.9 GB BF16 models against readpass over both, same run.
perf-diff:
	bash scripts/perf-diff.sh

## eval: the labelled classifier evaluation with --probe (AUROC, target classes; a few minutes).
eval:
	KENSA_EVAL=1 $(GO) test -count=1 -run 'TestClassifierProbeEval|TestEvalClassifiers' -v -timeout 30m ./scan/detect/probe ./scan | grep -E 'AUROC|^(ok|FAIL|---)'

## bench-compare: kensa bench against llama-bench (LLAMA_BENCH=path, your own build) on the generated 134M F32/Q8_0/Q4_K_M and 1.1B Q4_K_M llamas, same run.
bench-compare:
	bash scripts/bench-compare.sh

## bench-runtime: forward-pass speed on stories260K and a generated 134M-parameter llama (F32, Q8_0).
bench-runtime:
	$(GO) run ./testdata/gen -runtime -out $(RTDIR)
	KENSA_BENCH_134M=$(RTDIR) $(GO) test -run '^$$' -bench 'MatVec|Stories|134M' -benchtime 20x ./nn/llm/
