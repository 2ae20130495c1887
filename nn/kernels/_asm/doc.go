// Package asm holds the avo programs that generate the amd64 assembly of package kernels
// (one program per kernel family, each writing its own .s and stub file in the parent
// directory). It is a separate module so that kensa itself does not depend on avo; run
// `go generate ./nn/kernels/` (or `make asm`) from the repository root to regenerate.
package asm
