package scan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kensa-scan/kensa/formats"
)

// maxCompanion is the largest companion file read (tokenizer_config.json is a few KB; a
// huge one is reported instead of read).
const maxCompanion = 16 << 20

// companionMetadata returns metadata entries from the files that sit beside a safetensors
// model and that runtimes read with it: the chat template(s) of tokenizer_config.json,
// under the keys "tokenizer_config.chat_template" and "tokenizer_config.chat_template.NAME".
// Each entry carries its file and the byte range of its value there.
func companionMetadata(fm *formats.Model) ([]formats.KV, error) {
	if fm.Format != "safetensors" || len(fm.Files) == 0 {
		return nil, nil
	}
	dir := filepath.Dir(fm.Files[0].Path)
	name := "tokenizer_config.json"
	f, err := formats.OpenInDir(dir, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	defer f.Close()
	if f.Size > maxCompanion {
		return nil, fmt.Errorf("%s: %d bytes, larger than kensa reads (%d)", f.Path, f.Size, maxCompanion)
	}
	b, err := f.Bytes(0, f.Size, nil)
	if err != nil {
		return nil, err
	}
	b = append([]byte(nil), b...) // the file is closed on return
	// Walk the top-level object to find "chat_template" and the byte range of its value.
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%s: not a JSON object", f.Path)
	}
	var out []formats.KV
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		key, _ := kt.(string)
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		if key != "chat_template" {
			continue
		}
		end := dec.InputOffset()
		// skip the ':' and spaces between the key and the value
		for start < end && (b[start] == ':' || b[start] == ' ' || b[start] == '\n' || b[start] == '\t' || b[start] == '\r') {
			start++
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out = append(out, formats.KV{Key: "tokenizer_config.chat_template", Value: s, File: f.Path, Offset: start, Length: end - start})
			continue
		}
		var named []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if json.Unmarshal(raw, &named) == nil {
			for _, nt := range named {
				out = append(out, formats.KV{Key: "tokenizer_config.chat_template." + nt.Name, Value: nt.Template, File: f.Path, Offset: start, Length: end - start})
			}
		}
	}
	return out, nil
}
