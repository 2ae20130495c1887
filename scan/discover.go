package scan

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// targetKind says how a discovered target is scanned.
type targetKind int

const (
	kindModel  targetKind = iota // a model file or directory: formats.Open(Path)
	kindFiles                    // files that belong together but hold no model kensa reads
	kindOllama                   // an Ollama manifest: its layers
	kindError                    // could not be examined at all (Err)
)

// Spec is one target found by Discover: what to scan, what to call it, and what of its
// surroundings was looked at and not scanned.
type Spec struct {
	// Path is the model file, model directory, Ollama manifest or directory of files.
	Path string
	// Name is the store's name of the model (ORG/NAME@REV, MODEL:TAG, PUBLISHER/MODEL/FILE),
	// or "".
	Name string
	// Skipped lists the files of the model directory or store entry that are not scanned.
	Skipped []SkippedFile
	// Findings are what discovery itself found: files that can run code and that kensa
	// cannot verify, links that leave the tree, special files.
	Findings []Finding
	// Err is why the target could not be examined (a kindError target).
	Err error

	kind  targetKind
	store string // Ollama: the store root (holding manifests/ and blobs/)
}

// headBytes is how much of each file discovery reads to tell its kind (262 covers a tar
// header's "ustar" magic).
const headBytes = 262

// Discover expands paths into targets, in a stable order, each model once:
//
//   - a file is one target (its format told by its bytes); a FIFO, socket or device is an
//     error target and is never opened;
//   - a directory is searched by formats.ModelsIn (a sharded safetensors checkpoint is one
//     target, every other safetensors or GGUF file one each), and, with recursive, so is
//     every directory below it; an unreadable directory is an error target and the walk
//     goes on;
//   - a Hugging Face cache (its root, holding models--ORG--NAME folders, one such folder,
//     or one snapshot) yields each snapshot's models, named ORG/NAME@REV, whether or not
//     recursive is set; blobs/ and refs/ are not walked on their own;
//   - an Ollama store (a folder holding manifests/ and blobs/, or its manifests/ folder or
//     one manifest) yields one target per manifest, named MODEL:TAG;
//   - a GGUF file under an LM Studio models folder is named PUBLISHER/MODEL/FILE.
//
// Symbolic links are followed only to places inside the path given (for a Hugging Face
// snapshot, inside its repository folder, where blobs/ is), each directory once, so links
// never loop; a link that leaves is not followed and is a finding. Hidden directories are
// not walked (and are listed as skipped). Files that belong to no model are listed in the
// Skipped of the directory's first target, and those that can run code when loaded are
// high findings; a directory with no model but such files is a target of its own.
func Discover(paths []string, recursive bool) []Spec {
	d := &discoverer{recursive: recursive, seen: map[string]bool{}, visited: map[string]bool{}}
	for _, p := range paths {
		d.path(p)
	}
	return d.out
}

// Targets returns the paths of the targets Discover finds (kept for callers that need only
// the paths).
func Targets(paths []string, recursive bool) ([]string, error) {
	var out []string
	for _, s := range Discover(paths, recursive) {
		out = append(out, s.Path)
	}
	return out, nil
}

type discoverer struct {
	recursive bool
	out       []Spec
	seen      map[string]bool // target paths already listed
	visited   map[string]bool // real paths of directories already walked
}

func (d *discoverer) add(s Spec) {
	key := s.Path
	if s.kind == kindOllama {
		key = "ollama:" + s.Path
	}
	if d.seen[key] {
		return
	}
	d.seen[key] = true
	d.out = append(d.out, s)
}

func (d *discoverer) fail(path string, err error) {
	d.add(Spec{Path: path, kind: kindError, Err: err})
}

func (d *discoverer) path(p string) {
	if rp := "path:" + realPath(p); d.seen[rp] {
		return // given twice
	} else {
		d.seen[rp] = true
	}
	st, err := os.Stat(p)
	if err != nil {
		d.fail(p, err)
		return
	}
	if !st.IsDir() {
		if !st.Mode().IsRegular() {
			d.fail(p, fmt.Errorf("%s is a %s, not a regular file: never opened", p, formats.ModeName(st.Mode())))
			return
		}
		if root, ok := ollamaStoreOf(p); ok && isUnder(p, filepath.Join(root, "manifests")) {
			d.ollamaStore(root, p)
			return
		}
		d.file(p)
		return
	}
	switch {
	case isOllamaStore(p):
		d.ollamaStore(p, filepath.Join(p, "manifests"))
		return
	case filepath.Base(filepath.Clean(p)) == "manifests" && isOllamaStore(filepath.Dir(filepath.Clean(p))):
		d.ollamaStore(filepath.Dir(filepath.Clean(p)), p)
		return
	}
	if root, ok := ollamaStoreOf(p); ok && isUnder(p, filepath.Join(root, "manifests")) {
		d.ollamaStore(root, p)
		return
	}
	if repo, snap, ok := hfSnapshotOf(p); ok {
		if snap == "" {
			d.hfRepo(repo)
		} else {
			d.hfSnapshot(repo, snap)
		}
		return
	}
	if isHFCacheRoot(p) {
		d.hfCacheRoot(p)
		return
	}
	found := len(d.out)
	d.walk(p, p, true)
	if len(d.out) == found && !d.recursive {
		if subs := modelSubdirs(p); len(subs) > 0 {
			d.fail(p, fmt.Errorf("%s holds no model itself; its sub-directories %s do: scan with -r (--recursive)", p, strings.Join(subs, ", ")))
			return
		}
	}
	if len(d.out) == found {
		d.fail(p, fmt.Errorf("formats: directory %s: %w", p, formats.ErrNoModel))
	}
}

// file adds a file given by path: a model by its bytes or name, else a file of a kind that
// can run code (a target of its own with the finding), else a model target that fails to
// open with the reason.
func (d *discoverer) file(p string) {
	head, err := formats.ReadHead(p, headBytes)
	if err != nil {
		d.fail(p, err)
		return
	}
	models, rest := formats.ModelsIn(filepath.Dir(p), []formats.Entry{{Name: filepath.Base(p), Head: head}})
	if len(models) == 1 {
		d.add(Spec{Path: p, Name: lmStudioName(p)})
		return
	}
	k := formats.Classify(rest[0].Name, head)
	if k.Code || k.Model || k.Source {
		sk, fs := skippedFile(p, k)
		d.add(Spec{Path: p, kind: kindFiles, Skipped: []SkippedFile{sk}, Findings: fs})
		return
	}
	d.add(Spec{Path: p}) // opening it reports the unknown format with its first bytes
}

// dirListing is what one directory holds.
type dirListing struct {
	entries  []formats.Entry
	paths    map[string]string // entry name -> path to read it through (the link's target)
	subdirs  []string          // paths of sub-directories to walk (links resolved)
	skipped  []SkippedFile
	findings []Finding
	errs     []Spec // unreadable files
}

// list reads one directory. root bounds where symbolic links may lead.
func (d *discoverer) list(dir, root string) (*dirListing, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := &dirListing{paths: map[string]string{}}
	realRoot := realPath(root)
	for _, e := range ents {
		full := filepath.Join(dir, e.Name())
		mode := e.Type()
		target := full
		if mode&fs.ModeSymlink != 0 {
			res, err := filepath.EvalSymlinks(full)
			if err != nil {
				l.skipped = append(l.skipped, SkippedFile{Path: full, Format: "symbolic link", Reason: "broken or looping symbolic link: " + errText(err)})
				continue
			}
			if !isUnder(res, realRoot) {
				dest, _ := os.Readlink(full)
				l.skipped = append(l.skipped, SkippedFile{Path: full, Format: "symbolic link", Reason: "leads outside the scanned tree (to " + dest + "): not followed"})
				l.findings = append(l.findings, linkEscape(full, dest, res))
				continue
			}
			st, err := os.Stat(res)
			if err != nil {
				l.skipped = append(l.skipped, SkippedFile{Path: full, Format: "symbolic link", Reason: errText(err)})
				continue
			}
			mode, target = st.Mode().Type(), res
		}
		switch {
		case mode.IsDir():
			if strings.HasPrefix(e.Name(), ".") {
				l.skipped = append(l.skipped, SkippedFile{Path: full, Format: "hidden directory", Reason: "hidden directories are not walked"})
				continue
			}
			l.subdirs = append(l.subdirs, full)
		case mode.IsRegular():
			head, err := formats.ReadHead(target, headBytes)
			if err != nil {
				l.errs = append(l.errs, Spec{Path: full, kind: kindError, Err: err})
				continue
			}
			id := ""
			if st, err := os.Stat(target); err == nil {
				id = formats.FileID(st)
			}
			l.entries = append(l.entries, formats.Entry{Name: e.Name(), Head: head, ID: id})
			l.paths[e.Name()] = target
		default:
			l.skipped = append(l.skipped, SkippedFile{Path: full, Format: formats.ModeName(mode), Reason: "not a regular file: never opened"})
			if looksLikeModelFile(e.Name()) {
				l.findings = append(l.findings, specialFile(full, formats.ModeName(mode)))
			}
		}
	}
	sort.Strings(l.subdirs)
	return l, nil
}

// walked is what walking a directory (and, when asked, the directories below it) found:
// its model targets and the files that belong to none.
type walked struct {
	models   []Spec
	skipped  []SkippedFile
	findings []Finding
	unknown  bool     // some file is of a kind that can run code or is a model kensa cannot read
	later    []string // sub-directories to walk after the directory's own targets
}

// walk searches dir for models (and the directories below it with -r) and adds them.
// explicit is set for a path the user gave.
func (d *discoverer) walk(dir, root string, explicit bool) {
	w := d.collect(dir, root, d.recursive, true)
	d.emit(dir, "", w, explicit)
	for _, s := range w.later {
		switch {
		case isOllamaStore(s):
			d.ollamaStore(s, filepath.Join(s, "manifests"))
		case isHFRepo(s):
			d.hfRepo(s)
		case isHFCacheRoot(s):
			d.hfCacheRoot(s)
		default:
			d.walk(s, root, false)
		}
	}
}

// collect walks dir (below it too when deep) and returns what it found. Store layouts met
// on the way (Hugging Face repositories, Ollama stores) are added as targets of their own
// when top is set.
func (d *discoverer) collect(dir, root string, deep, top bool) *walked {
	w := &walked{}
	rp := realPath(dir)
	if d.visited[rp] {
		return w
	}
	d.visited[rp] = true
	l, err := d.list(dir, root)
	if err != nil {
		d.fail(dir, err)
		return w
	}
	d.out = append(d.out, l.errs...)
	models, rest := formats.ModelsIn(dir, l.entries)
	for _, m := range models {
		w.models = append(w.models, Spec{Path: m.Path, Name: lmStudioName(m.Path)})
	}
	for _, e := range rest {
		k := formats.Classify(e.Name, e.Head)
		sk, fs := skippedFile(filepath.Join(dir, e.Name), k)
		w.skipped = append(w.skipped, sk)
		w.findings = append(w.findings, fs...)
		w.unknown = w.unknown || k.Code || k.Model || k.Source
	}
	w.skipped = append(w.skipped, l.skipped...)
	w.findings = append(w.findings, l.findings...)
	w.unknown = w.unknown || len(l.findings) > 0
	if !deep {
		for _, s := range l.subdirs {
			w.skipped = append(w.skipped, SkippedFile{Path: s, Format: "directory", Reason: "sub-directory not walked (no -r)"})
		}
		return w
	}
	for _, s := range l.subdirs {
		switch {
		case top:
			w.later = append(w.later, s)
		default:
			// inside a store entry: the sub-directory's files belong to the entry
			sub := d.collect(s, root, true, false)
			w.models = append(w.models, sub.models...)
			w.skipped = append(w.skipped, sub.skipped...)
			w.findings = append(w.findings, sub.findings...)
			w.unknown = w.unknown || sub.unknown
		}
	}
	return w
}

// emit turns what a directory held into targets: its models, the first carrying the
// directory's other files; with no model, a target of its own when it holds files kensa
// cannot verify (or when it is a store entry, name set).
func (d *discoverer) emit(dir, name string, w *walked, explicit bool) {
	if len(w.models) == 0 {
		if w.unknown || name != "" {
			s := Spec{Path: dir, Name: name, kind: kindFiles, Skipped: w.skipped, Findings: w.findings}
			if !w.unknown {
				s.Err = fmt.Errorf("%s holds no model in a format kensa reads", dir)
			}
			d.add(s)
		}
		return
	}
	for i, m := range w.models {
		if name != "" {
			m.Name = name
			if len(w.models) > 1 {
				rel, err := filepath.Rel(dir, m.Path)
				if err != nil {
					rel = filepath.Base(m.Path)
				}
				m.Name = name + "/" + filepath.ToSlash(rel)
			}
		}
		if i == 0 {
			m.Skipped = append(m.Skipped, w.skipped...)
			m.Findings = append(m.Findings, w.findings...)
		}
		d.add(m)
	}
}

// --- Hugging Face cache ---

// isHFRepo reports whether dir is a cache repository folder: models--ORG--NAME holding
// snapshots/.
func isHFRepo(dir string) bool {
	if !strings.HasPrefix(filepath.Base(filepath.Clean(dir)), "models--") {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, "snapshots"))
	return err == nil && st.IsDir()
}

// isHFCacheRoot reports whether dir holds cache repository folders.
func isHFCacheRoot(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.IsDir() && isHFRepo(filepath.Join(dir, e.Name())) {
			return true
		}
	}
	return false
}

// hfSnapshotOf tells whether dir is a cache repository folder (snap "") or lies inside
// one of its snapshots (snap is the snapshot folder).
func hfSnapshotOf(dir string) (repo, snap string, ok bool) {
	p := filepath.Clean(dir)
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if isHFRepo(p) {
		return p, "", true
	}
	for cur := p; ; {
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", "", false
		}
		if filepath.Base(parent) == "snapshots" && isHFRepo(filepath.Dir(parent)) {
			return filepath.Dir(parent), cur, true
		}
		cur = parent
	}
}

// hfName turns models--ORG--NAME into ORG/NAME.
func hfName(repo string) string {
	n := strings.TrimPrefix(filepath.Base(repo), "models--")
	return strings.Replace(n, "--", "/", 1)
}

func (d *discoverer) hfCacheRoot(root string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		d.fail(root, err)
		return
	}
	for _, e := range ents {
		p := filepath.Join(root, e.Name())
		switch {
		case e.IsDir() && isHFRepo(p):
			d.hfRepo(p)
		case e.IsDir() && d.recursive && !strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(e.Name(), "datasets--") && !strings.HasPrefix(e.Name(), "spaces--"):
			d.walk(p, root, false)
		}
	}
}

func (d *discoverer) hfRepo(repo string) {
	snaps := filepath.Join(repo, "snapshots")
	ents, err := os.ReadDir(snaps)
	if err != nil {
		d.fail(snaps, err)
		return
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			d.hfSnapshot(repo, filepath.Join(snaps, e.Name()))
			n++
		}
	}
	if n == 0 {
		d.fail(repo, fmt.Errorf("%s: Hugging Face cache repository with no snapshot", repo))
	}
}

// hfSnapshot adds one snapshot: every file in it and below it belongs to the store entry
// ORG/NAME@REV; links may lead anywhere inside the repository folder (blobs/).
func (d *discoverer) hfSnapshot(repo, snap string) {
	name := hfName(repo) + "@" + filepath.Base(snap)
	w := d.collect(snap, repo, true, false)
	d.emit(snap, name, w, true)
}

// --- Ollama ---

// isOllamaStore reports whether dir holds manifests/ and blobs/.
func isOllamaStore(dir string) bool {
	for _, s := range []string{"manifests", "blobs"} {
		st, err := os.Stat(filepath.Join(dir, s))
		if err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// ollamaStoreOf finds the store a path lies in.
func ollamaStoreOf(p string) (string, bool) {
	cur := filepath.Clean(p)
	if abs, err := filepath.Abs(cur); err == nil {
		cur = abs
	}
	for {
		if isOllamaStore(cur) {
			return cur, true
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", false
		}
		cur = parent
	}
}

// ollamaStore adds every manifest at or below under, in the store root.
func (d *discoverer) ollamaStore(root, under string) {
	manifests := filepath.Join(root, "manifests")
	st, err := os.Stat(under)
	if err != nil {
		d.fail(under, err)
		return
	}
	if !st.IsDir() {
		d.add(Spec{Path: under, Name: ollamaName(manifests, under), kind: kindOllama, store: root})
		return
	}
	found := 0
	err = filepath.WalkDir(under, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			d.fail(p, err)
			if e != nil && e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case e.IsDir():
			return nil
		case e.Type().IsRegular():
			d.add(Spec{Path: p, Name: ollamaName(manifests, p), kind: kindOllama, store: root})
			found++
		default:
			d.add(Spec{Path: p, kind: kindError, Err: fmt.Errorf("%s: a %s in the manifests folder: not followed", p, formats.ModeName(e.Type()))})
		}
		return nil
	})
	if err != nil {
		d.fail(under, err)
	}
	if found == 0 {
		d.fail(under, fmt.Errorf("ollama store %s: no manifest under %s", root, under))
	}
}

// ollamaName names a manifest manifests/REGISTRY/NAMESPACE/MODEL/TAG as Ollama lists it:
// MODEL:TAG for registry.ollama.ai/library, NAMESPACE/MODEL:TAG for other namespaces,
// REGISTRY/NAMESPACE/MODEL:TAG for other registries.
func ollamaName(manifests, p string) string {
	rel, err := filepath.Rel(manifests, p)
	if err != nil {
		return filepath.Base(p)
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) < 2 {
		return parts[0]
	}
	model, tag := parts[len(parts)-2], parts[len(parts)-1]
	prefix := parts[:len(parts)-2]
	if len(prefix) > 0 && prefix[0] == "registry.ollama.ai" {
		prefix = prefix[1:]
		if len(prefix) == 1 && prefix[0] == "library" {
			prefix = nil
		}
	}
	return strings.Join(append(prefix, model), "/") + ":" + tag
}

// --- LM Studio ---

// lmStudioName names a model file under an LM Studio models folder
// (~/.lmstudio/models/PUBLISHER/MODEL/FILE, or the older ~/.cache/lm-studio/models):
// PUBLISHER/MODEL/FILE, as LM Studio lists it; "" elsewhere.
func lmStudioName(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return ""
	}
	parts := strings.Split(filepath.ToSlash(abs), "/")
	for i := len(parts) - 4; i >= 1; i-- {
		if parts[i] != "models" {
			continue
		}
		switch strings.ToLower(parts[i-1]) {
		case ".lmstudio", "lmstudio", "lm-studio", ".lm-studio", "lm studio":
			return strings.Join(parts[i+1:], "/")
		}
	}
	return ""
}

// --- helpers ---

// modelSubdirs lists (up to 8) sub-directories of dir that hold models.
func modelSubdirs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if len(out) == 8 {
			out = append(out, "…")
			break
		}
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && formats.HoldsModel(filepath.Join(dir, e.Name()), 3) {
			out = append(out, e.Name())
		}
	}
	return out
}

// realPath resolves every link of p (p itself when that fails).
func realPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// isUnder reports whether p is root or lies below it (both cleaned, absolute or not alike).
func isUnder(p, root string) bool {
	ap, err1 := filepath.Abs(p)
	ar, err2 := filepath.Abs(root)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(ar, ap)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// looksLikeModelFile reports whether a name is one a runtime would open with the model.
func looksLikeModelFile(name string) bool {
	low := strings.ToLower(name)
	switch filepath.Ext(low) {
	case ".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".json", ".jinja", ".model", ".txt", ".onnx", ".h5", ".keras", ".npy", ".npz", ".pkl":
		return true
	}
	return false
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
