module github.com/kensa-scan/kensa/nn/kernels/_asm

go 1.26
