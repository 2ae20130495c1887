package scan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// Ollama media types (docs/modelfile and the server's layer types).
const (
	ollamaModel     = "application/vnd.ollama.image.model"
	ollamaAdapter   = "application/vnd.ollama.image.adapter"
	ollamaProjector = "application/vnd.ollama.image.projector"
	ollamaTemplate  = "application/vnd.ollama.image.template"
	ollamaPrompt    = "application/vnd.ollama.image.prompt" // the template's older name
	ollamaSystem    = "application/vnd.ollama.image.system"
	ollamaParams    = "application/vnd.ollama.image.params"
	ollamaLicense   = "application/vnd.ollama.image.license"
	ollamaMessages  = "application/vnd.ollama.image.messages"
)

// Bounds of what is read of an Ollama store entry.
const (
	maxOllamaManifest = 4 << 20
	maxOllamaText     = 4 << 20 // template, system, params, messages, license, config
)

type ollamaLayer struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type ollamaManifest struct {
	SchemaVersion int           `json:"schemaVersion"`
	MediaType     string        `json:"mediaType"`
	Config        ollamaLayer   `json:"config"`
	Layers        []ollamaLayer `json:"layers"`
}

// ollamaBlob is a layer found in the store.
type ollamaBlob struct {
	layer ollamaLayer
	path  string
	hex   string // the digest's hex
}

// ollamaEntry is a manifest resolved against its store: the model blobs to scan (the model
// first, then adapters and projectors), the metadata its text layers add, and what was
// found about the layers themselves.
type ollamaEntry struct {
	models   []ollamaBlob
	kvs      []formats.KV
	files    []FileInfo // the manifest and the small layers, with their (verified) digests
	findings []Finding
	skipped  []SkippedFile
}

// loadOllama reads the manifest of s and resolves its layers in the store's blobs/.
func loadOllama(s *Spec) (*ollamaEntry, error) {
	b, err := formats.ReadCompanion(filepath.Dir(s.Path), filepath.Base(s.Path), maxOllamaManifest)
	if err != nil {
		return nil, fmt.Errorf("ollama manifest: %w", err)
	}
	var m ollamaManifest
	if err := json.Unmarshal(b, &m); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, &formats.FormatError{Format: "ollama-manifest", File: s.Path, Offset: se.Offset, Msg: se.Error(), Err: formats.ErrInvalid}
		}
		return nil, &formats.FormatError{Format: "ollama-manifest", File: s.Path, Offset: -1, Msg: err.Error(), Err: formats.ErrInvalid}
	}
	if len(m.Layers) == 0 {
		return nil, &formats.FormatError{Format: "ollama-manifest", File: s.Path, Offset: -1, Msg: "no layers", Err: formats.ErrInvalid}
	}
	sum := sha256.Sum256(b)
	e := &ollamaEntry{files: []FileInfo{{Path: s.Path, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}}}
	blobs := filepath.Join(s.store, "blobs")
	layers := m.Layers
	if m.Config.Digest != "" {
		layers = append([]ollamaLayer{m.Config}, layers...)
	}
	for i, l := range layers {
		isConfig := i == 0 && m.Config.Digest != ""
		bl, ok := e.resolve(s.Path, blobs, l)
		if !ok {
			continue
		}
		switch {
		case l.MediaType == ollamaModel || l.MediaType == ollamaAdapter || l.MediaType == ollamaProjector:
			if l.MediaType == ollamaModel && len(e.models) > 0 && e.models[0].layer.MediaType != ollamaModel {
				e.models = append([]ollamaBlob{bl}, e.models...)
			} else {
				e.models = append(e.models, bl)
			}
		case isConfig:
			e.text(bl, "", false)
		case l.MediaType == ollamaTemplate || l.MediaType == ollamaPrompt:
			e.text(bl, "ollama.template", false)
		case l.MediaType == ollamaSystem:
			e.text(bl, "ollama.system", false)
		case l.MediaType == ollamaParams:
			e.text(bl, "ollama.params", true)
		case l.MediaType == ollamaMessages:
			e.text(bl, "ollama.messages", true)
		case l.MediaType == ollamaLicense:
			e.text(bl, "ollama.license", false)
		default:
			e.skipped = append(e.skipped, SkippedFile{Path: bl.path, Format: l.MediaType, Reason: "layer of a media type kensa does not know: not examined"})
			e.findings = append(e.findings, fileFinding(RuleOllamaLayer, Medium, bl.path,
				fmt.Sprintf("layer %s of %s has media type %q, which kensa does not know: not examined", l.Digest, s.Path, l.MediaType),
				map[string]any{"media_type": l.MediaType, "digest": l.Digest}))
		}
	}
	if len(e.models) == 0 || e.models[0].layer.MediaType != ollamaModel {
		return e, &formats.FormatError{Format: "ollama-manifest", File: s.Path, Offset: -1, Msg: "no model layer (" + ollamaModel + ") that kensa can read", Err: formats.ErrInvalid}
	}
	return e, nil
}

// resolve finds a layer's blob (blobs/sha256-HEX, or the older blobs/sha256:HEX), and
// reports a layer that names none.
func (e *ollamaEntry) resolve(manifest, blobs string, l ollamaLayer) (ollamaBlob, bool) {
	h, ok := strings.CutPrefix(l.Digest, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
		e.findings = append(e.findings, fileFinding(RuleOllamaLayer, Medium, manifest,
			fmt.Sprintf("a layer of %s (%s) has digest %q, which is not sha256:<64 hex digits>: not followed", manifest, l.MediaType, l.Digest),
			map[string]any{"media_type": l.MediaType, "digest": l.Digest}))
		return ollamaBlob{}, false
	}
	h = strings.ToLower(h)
	for _, name := range []string{"sha256-" + h, "sha256:" + h} {
		f, err := formats.OpenInDir(blobs, name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			e.findings = append(e.findings, fileFinding(RuleOllamaLayer, Medium, filepath.Join(blobs, name),
				fmt.Sprintf("blob of layer %s (%s) cannot be opened: %v", l.Digest, l.MediaType, err),
				map[string]any{"media_type": l.MediaType, "digest": l.Digest}))
			return ollamaBlob{}, false
		}
		size := f.Size
		f.Close()
		bl := ollamaBlob{layer: l, path: filepath.Join(blobs, name), hex: h}
		if l.Size != 0 && size != l.Size {
			e.findings = append(e.findings, digestFinding(bl, fmt.Sprintf("is %d bytes, and the manifest says %d", size, l.Size)))
		}
		return bl, true
	}
	e.skipped = append(e.skipped, SkippedFile{Path: filepath.Join(blobs, "sha256-"+h), Format: l.MediaType, Reason: "blob missing from the store"})
	e.findings = append(e.findings, fileFinding(RuleOllamaLayer, Medium, manifest,
		fmt.Sprintf("the blob of layer %s (%s) is missing from %s", l.Digest, l.MediaType, blobs),
		map[string]any{"media_type": l.MediaType, "digest": l.Digest}))
	return ollamaBlob{}, false
}

func digestFinding(bl ollamaBlob, what string) Finding {
	return fileFinding(RuleOllamaDigest, High, bl.path,
		fmt.Sprintf("blob %s (%s) %s: it was changed after it was pulled (tampered with or corrupt)", filepath.Base(bl.path), bl.layer.MediaType, what),
		map[string]any{"digest": bl.layer.Digest, "media_type": bl.layer.MediaType})
}

// text reads a small layer, verifies its digest and adds it as metadata under key (none
// for "").
func (e *ollamaEntry) text(bl ollamaBlob, key string, isJSON bool) {
	b, err := formats.ReadCompanion(filepath.Dir(bl.path), filepath.Base(bl.path), maxOllamaText)
	if err != nil {
		e.skipped = append(e.skipped, SkippedFile{Path: bl.path, Format: bl.layer.MediaType, Reason: errText(err)})
		e.findings = append(e.findings, fileFinding(RuleOllamaLayer, Medium, bl.path,
			fmt.Sprintf("layer %s (%s) was not examined: %v", bl.layer.Digest, bl.layer.MediaType, err),
			map[string]any{"media_type": bl.layer.MediaType, "digest": bl.layer.Digest}))
		return
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	e.files = append(e.files, FileInfo{Path: bl.path, Size: int64(len(b)), SHA256: got})
	if got != bl.hex {
		e.findings = append(e.findings, digestFinding(bl, "has SHA-256 "+got+", not the "+bl.hex+" it is named by"))
	}
	if isJSON {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			e.findings = append(e.findings, fileFinding(RuleOllamaLayer, Medium, bl.path,
				fmt.Sprintf("layer %s (%s) is not valid JSON: %v", bl.layer.Digest, bl.layer.MediaType, err),
				map[string]any{"media_type": bl.layer.MediaType, "digest": bl.layer.Digest}))
		}
	}
	if key != "" {
		e.kvs = append(e.kvs, formats.KV{Key: key, Value: string(b), File: bl.path, Offset: 0, Length: int64(len(b))})
	}
}
