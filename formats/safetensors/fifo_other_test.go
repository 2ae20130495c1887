//go:build !unix

package safetensors_test

import "errors"

func mkfifo(path string) error { return errors.New("no FIFOs on this platform") }
