package structure

import "bytes"

// Signature is a recognisable file or code format found inside bytes no tensor references.
type Signature struct {
	Name   string
	Offset int64 // relative to the scanned bytes
}

var magics = []struct {
	name  string
	magic []byte
	at0   bool // only meaningful at the start of the region
}{
	{"ELF executable", []byte("\x7fELF"), false},
	{"PE/DOS executable", []byte("MZ"), true},
	{"Mach-O executable", []byte("\xcf\xfa\xed\xfe"), false},
	{"Mach-O executable", []byte("\xfe\xed\xfa\xcf"), false},
	{"ZIP archive", []byte("PK\x03\x04"), false},
	{"gzip data", []byte("\x1f\x8b\x08"), false},
	{"bzip2 data", []byte("BZh"), true},
	{"xz data", []byte("\xfd7zXZ\x00"), false},
	{"zstd data", []byte("\x28\xb5\x2f\xfd"), false},
	{"7z archive", []byte("7z\xbc\xaf\x27\x1c"), false},
	{"RAR archive", []byte("Rar!\x1a\x07"), false},
	{"PNG image", []byte("\x89PNG\r\n\x1a\n"), false},
	{"PDF document", []byte("%PDF-"), false},
	{"Python pickle", []byte("\x80\x04\x95"), false},
	{"Python pickle", []byte("\x80\x02"), true},
	{"shell script", []byte("#!/bin/"), false},
	{"script (shebang)", []byte("#!/usr/bin/env"), false},
	{"PowerShell", []byte("powershell"), false},
	{"Java class", []byte("\xca\xfe\xba\xbe"), false},
	{"WebAssembly", []byte("\x00asm\x01\x00\x00\x00"), false},
	{"GGUF file", []byte("GGUF"), true},
}

// Signatures lists recognisable formats in b: magics at any offset (those prone to chance
// matches only at offset 0), at most max matches.
func Signatures(b []byte, max int) []Signature {
	var out []Signature
	for _, m := range magics {
		if m.at0 {
			if bytes.HasPrefix(b, m.magic) {
				out = append(out, Signature{m.name, 0})
			}
			continue
		}
		if i := bytes.Index(b, m.magic); i >= 0 {
			out = append(out, Signature{m.name, int64(i)})
		}
		if len(out) >= max {
			break
		}
	}
	return out
}

// printable returns the fraction of bytes in b that are printable ASCII or common
// whitespace: text hides in weights too.
func printable(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	n := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7f || c == '\n' || c == '\r' || c == '\t' {
			n++
		}
	}
	return float64(n) / float64(len(b))
}
