package gguf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// openDir opens the GGUF model of a directory that holds exactly one .gguf file.
func openDir(dir string) (*formats.Model, bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ".gguf") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	switch len(names) {
	case 0:
		return nil, false, nil
	case 1:
	default:
		return nil, false, fmt.Errorf("gguf: directory %s holds %d GGUF files (%s): name one", dir, len(names), strings.Join(names, ", "))
	}
	mf, err := formats.OpenInDir(dir, names[0])
	if err != nil {
		return nil, false, err
	}
	f, err := NewFile(mf, mf.Size)
	if err != nil {
		mf.Close()
		return nil, false, formats.WithFile(err, mf.Path)
	}
	m := f.Model(mf)
	m.Path = dir
	return m, true, nil
}
