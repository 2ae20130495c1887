// Package pytorch reads PyTorch checkpoints without running them: torch.save zip archives
// (ARCHIVE/data.pkl, ARCHIVE/data/N, version; TorchScript's constants.pkl too), the legacy
// torch.save format (magic-number, protocol, sys_info, object and storage-key pickles
// followed by raw storages), and archives torch cannot read but attackers ship as .pt
// (7-Zip: the pickles stored in them are found by their bytes). Every pickle is read with
// formats/pickle, so Model.Code lists what loading would import and call; storages named by
// persistent ids become tensors with absolute offsets in the file.
package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
	"github.com/kensa-scan/kensa/formats/pickle"
)

func init() {
	formats.Register(formats.Format{Name: "pytorch", Match: Match, Open: Open, Priority: 40})
	formats.Register(formats.Format{Name: "7z", Match: Match7z, Open: Open7z, Priority: 41})
}

// zipTorchHead is how PyTorch's zip writer (miniz) starts every archive: a local header of
// version 0, flags 0x0808, method stored, and a zero DOS time and date.
var zipTorchHead = []byte{'P', 'K', 3, 4, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0}

// Match reports whether head starts a torch.save zip (as torch writes it) or a legacy
// torch.save file.
func Match(head []byte) bool {
	return bytes.HasPrefix(head, zipTorchHead) || pickle.IsTorchLegacy(head)
}

// Open reads a PyTorch zip or legacy checkpoint.
func Open(f *formats.File) (*formats.Model, error) {
	head := make([]byte, 16)
	n, _ := f.ReadAt(head, 0)
	if pickle.IsTorchLegacy(head[:n]) {
		return openLegacy(f)
	}
	return OpenZip(f)
}

// MaxPickle bounds the bytes of one compressed pickle member that are inflated.
const MaxPickle = 256 << 20

// Kinds of Header notes.
const (
	KeySkipped = "pytorch.skipped_tensor" // a tensor that is not mapped: "name: reason"
	KeyMember  = "pytorch.member"         // a member that could not be read
)

// OpenZip reads a zip archive in torch.save or torch.jit.save layout. Every *.pkl member is
// read; storages of ARCHIVE/X.pkl are the stored members ARCHIVE/X/KEY. CRCs are not
// checked (torch does not check them).
func OpenZip(f *formats.File) (*formats.Model, error) {
	zr, err := zip.NewReader(f, f.Size)
	if err != nil {
		return nil, formats.Errorf("pytorch", 0, formats.ErrInvalid, "zip: %v", err)
	}
	m := &formats.Model{Format: "pytorch", Path: f.Path, Files: []*formats.File{f}}
	members := map[string]*zip.File{}
	var pkls []*zip.File
	for _, zf := range zr.File {
		members[zf.Name] = zf // the last of a duplicated name wins, as extraction keeps it
		if strings.HasSuffix(zf.Name, ".pkl") {
			pkls = append(pkls, zf)
		}
	}
	if len(pkls) == 0 {
		return nil, formats.Errorf("pytorch", 0, formats.ErrInvalid, "zip holds no .pkl member (not a PyTorch archive)")
	}
	sort.SliceStable(pkls, func(i, j int) bool {
		return path.Base(pkls[i].Name) == "data.pkl" && path.Base(pkls[j].Name) != "data.pkl"
	})
	if zf := members[path.Dir(pkls[0].Name)+"/version"]; zf != nil {
		if b, err := readSmall(zf, 64); err == nil {
			m.Header = append(m.Header, formats.KV{Key: "pytorch.version", Value: strings.TrimSpace(string(b))})
		}
	}
	if _, ok := members[path.Dir(pkls[0].Name)+"/constants.pkl"]; ok {
		m.Format = "torchscript"
	}
	ts := &tensors{m: m, f: f, seen: map[*pickle.Call]bool{}}
	for _, zf := range pkls {
		data, base, err := memberBytes(f, zf)
		if err != nil {
			m.Header = append(m.Header, formats.KV{Key: KeyMember, Value: zf.Name + ": " + err.Error()})
			continue
		}
		streams := pickle.ParseAll(data, base, f.Path, zf.Name, pickle.Limits{}, pickle.MaxStreams)
		pickle.AddStreams(m, streams, zf.Name)
		dir := strings.TrimSuffix(zf.Name, ".pkl") + "/"
		ts.storage = func(key string) (int64, int64, string) {
			sf := members[dir+key]
			if sf == nil {
				return 0, 0, "storage member " + dir + key + " is missing"
			}
			if sf.Method != zip.Store {
				return 0, 0, "storage member " + dir + key + " is compressed"
			}
			off, err := sf.DataOffset()
			if err != nil || off < 0 || int64(sf.CompressedSize64) > f.Size-off || sf.CompressedSize64 != sf.UncompressedSize64 {
				return 0, 0, "storage member " + dir + key + " lies outside the file"
			}
			return off, int64(sf.UncompressedSize64), ""
		}
		for _, s := range streams {
			if s.Err == nil && path.Base(zf.Name) != "constants.pkl" {
				ts.walk(s.Value, "", 0)
			}
		}
	}
	return m, nil
}

// memberBytes returns a pickle member's bytes and, when it is stored, the absolute offset of
// its first byte (code offsets are then file offsets; for a compressed member they count
// from the member's start).
func memberBytes(f *formats.File, zf *zip.File) ([]byte, int64, error) {
	if zf.Method == zip.Store {
		off, err := zf.DataOffset()
		if err != nil {
			return nil, 0, err
		}
		n := int64(zf.CompressedSize64)
		if off < 0 || n < 0 || off > f.Size || n > f.Size-off {
			return nil, 0, formats.Errorf("pytorch", off, formats.ErrTruncated, "member %s of %d bytes is past the end of the file", zf.Name, n)
		}
		b, err := f.Bytes(off, n, nil)
		return b, off, err
	}
	b, err := readSmall(zf, MaxPickle)
	return b, 0, err
}

func readSmall(zf *zip.File, max int64) ([]byte, error) {
	rc, err := zf.OpenRaw()
	if err != nil {
		return nil, err
	}
	var r io.Reader = rc
	if zf.Method != zip.Store {
		r2, err := zf.Open()
		if err != nil {
			return nil, err
		}
		defer r2.Close()
		r = r2
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if int64(len(b)) > max {
		return nil, fmt.Errorf("member %s is larger than %d bytes", zf.Name, max)
	}
	if err == zip.ErrChecksum {
		err = nil
	}
	return b, err
}

// openLegacy reads the legacy format: five pickles, then for each storage key (in the order
// of the fifth pickle) an int64 element count and the raw elements.
func openLegacy(f *formats.File) (*formats.Model, error) {
	data, err := f.Bytes(0, f.Size, nil)
	if err != nil {
		return nil, err
	}
	m := &formats.Model{Format: "pytorch", Path: f.Path, Files: []*formats.File{f}, Header: []formats.KV{{Key: "pytorch.legacy", Value: true}}}
	var streams []*pickle.Stream
	pos := 0
	for i := 0; i < 5 && pos < len(data); i++ {
		s := pickle.Parse(data[pos:], int64(pos), f.Path, "", pickle.Limits{})
		streams = append(streams, s)
		if s.Err != nil {
			break
		}
		pos = int(s.End)
	}
	pickle.AddStreams(m, streams, "")
	if len(streams) < 5 || streams[4].Err != nil || streams[3].Err != nil {
		return m, nil
	}
	keys, ok := streams[4].Value.(*pickle.List)
	if !ok {
		m.Header = append(m.Header, formats.KV{Key: KeySkipped, Value: "storage key list is not a list"})
		return m, nil
	}
	// element sizes by key, from the persistent ids of the object pickle
	elem := map[string]int64{}
	for _, id := range streams[3].PersIDs {
		t, ok := id.ID.(pickle.Tuple)
		if ok && len(t) >= 3 {
			k, _ := t[2].(string)
			if _, es, ok := storageDType(t[1]); ok {
				elem[k] = es
			}
		}
	}
	type span struct{ off, n int64 }
	spans := map[string]span{}
	p := int64(pos)
	for _, kv := range keys.Items {
		k, _ := kv.(string)
		es, ok := elem[k]
		if !ok || p+8 > f.Size {
			break
		}
		n := int64(binary.LittleEndian.Uint64(data[p:]))
		if n < 0 || n > (f.Size-p-8)/es {
			m.Header = append(m.Header, formats.KV{Key: KeySkipped, Value: fmt.Sprintf("storage %s: %d elements at %d exceed the file", k, n, p), Offset: p})
			break
		}
		spans[k] = span{p + 8, n * es}
		p += 8 + n*es
	}
	ts := &tensors{m: m, f: f, seen: map[*pickle.Call]bool{}, storage: func(key string) (int64, int64, string) {
		s, ok := spans[key]
		if !ok {
			return 0, 0, "storage " + key + " is not in the file"
		}
		return s.off, s.n, ""
	}}
	ts.walk(streams[3].Value, "", 0)
	return m, nil
}

// tensors turns the rebuild calls of an object pickle into TensorInfo.
type tensors struct {
	m       *formats.Model
	f       *formats.File
	seen    map[*pickle.Call]bool
	storage func(key string) (off, length int64, problem string)
	visits  int
}

const maxDepth = 64

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func keyString(k any) (string, bool) {
	switch v := k.(type) {
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}

func (ts *tensors) walk(v any, name string, depth int) {
	ts.visits++
	if depth > maxDepth || ts.visits > 1<<20 {
		return
	}
	switch o := v.(type) {
	case *pickle.Dict:
		ts.dict(o, name, depth)
	case pickle.Tuple:
		for i, it := range o {
			ts.walk(it, join(name, strconv.Itoa(i)), depth+1)
		}
	case *pickle.List:
		for i, it := range o.Items {
			ts.walk(it, join(name, strconv.Itoa(i)), depth+1)
		}
	case *pickle.Call:
		if ts.seen[o] {
			return
		}
		ts.seen[o] = true
		if ts.rebuild(o, name, depth) {
			return
		}
		ts.dict(&o.Dict, name, depth)
		for i, it := range o.List {
			ts.walk(it, join(name, strconv.Itoa(i)), depth+1)
		}
		switch st := o.State.(type) {
		case *pickle.Dict:
			ts.dict(st, name, depth)
		case pickle.Tuple:
			for _, it := range st {
				if d, ok := it.(*pickle.Dict); ok {
					ts.dict(d, name, depth)
				}
			}
		}
	}
}

func (ts *tensors) dict(d *pickle.Dict, name string, depth int) {
	for i, k := range d.Keys {
		ks, ok := keyString(k)
		if !ok {
			continue
		}
		switch ks {
		case "_parameters", "_buffers", "_modules":
			ts.walk(d.Vals[i], name, depth+1)
		default:
			ts.walk(d.Vals[i], join(name, ks), depth+1)
		}
	}
}

func globalName(v any) string {
	if g, ok := v.(*pickle.Global); ok {
		return g.Module + "." + g.Name
	}
	return ""
}

// rebuild handles torch._utils rebuild calls; it reports whether c was one.
func (ts *tensors) rebuild(c *pickle.Call, name string, depth int) bool {
	switch globalName(c.Func) {
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v3":
		ts.tensor(c, name)
		return true
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state", "torch.nn.parameter.Parameter":
		if len(c.Args) > 0 {
			ts.walk(c.Args[0], name, depth+1)
		}
		return true
	case "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type":
		if len(c.Args) >= 3 {
			inner := &pickle.Call{Func: c.Args[0], Args: tupleOf(c.Args[2]), Off: c.Off}
			ts.walk(inner, name, depth+1)
		}
		return true
	}
	return false
}

func tupleOf(v any) pickle.Tuple {
	if t, ok := v.(pickle.Tuple); ok {
		return t
	}
	return nil
}

func ints(v any) ([]int64, bool) {
	t, ok := v.(pickle.Tuple)
	if !ok {
		if c, ok := v.(*pickle.Call); ok && globalName(c.Func) == "torch.Size" && len(c.Args) == 1 {
			t, ok = c.Args[0].(pickle.Tuple)
			if !ok {
				return nil, false
			}
		} else {
			return nil, false
		}
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

var storageTypes = map[string]struct {
	dt formats.DType
	es int64
}{
	"FloatStorage": {formats.F32, 4}, "HalfStorage": {formats.F16, 2}, "BFloat16Storage": {formats.BF16, 2},
	"DoubleStorage": {formats.F64, 8}, "LongStorage": {formats.I64, 8}, "IntStorage": {formats.I32, 4},
	"ShortStorage": {formats.I16, 2}, "CharStorage": {formats.I8, 1}, "ByteStorage": {formats.U8, 1},
	"BoolStorage": {formats.BOOL, 1}, "ComplexFloatStorage": {formats.C64, 8},
	"Float8_e4m3fnStorage": {formats.F8_E4M3, 1}, "Float8_e5m2Storage": {formats.F8_E5M2, 1},
	"UInt16Storage": {formats.U16, 2}, "UInt32Storage": {formats.U32, 4}, "UInt64Storage": {formats.U64, 8},
}

func storageDType(v any) (formats.DType, int64, bool) {
	g, ok := v.(*pickle.Global)
	if !ok || g.Module != "torch" {
		return formats.Invalid, 0, false
	}
	st, ok := storageTypes[g.Name]
	return st.dt, st.es, ok
}

func (ts *tensors) skip(name, why string) {
	ts.m.Header = append(ts.m.Header, formats.KV{Key: KeySkipped, Value: name + ": " + why})
}

func (ts *tensors) tensor(c *pickle.Call, name string) {
	if len(ts.m.Tensors) >= 1<<20 {
		return
	}
	if len(c.Args) < 4 {
		ts.skip(name, "rebuild call with fewer than 4 arguments")
		return
	}
	pid, ok := c.Args[0].(*pickle.PersID)
	if !ok {
		ts.skip(name, "storage is not a persistent id")
		return
	}
	t, ok := pid.ID.(pickle.Tuple)
	if !ok || len(t) < 5 || t[0] != "storage" {
		ts.skip(name, "persistent id is not a storage tuple")
		return
	}
	dt, es, ok := storageDType(t[1])
	if !ok {
		ts.skip(name, "unknown storage type "+pickle.Render(t[1], 2))
		return
	}
	key, ok := t[2].(string)
	if !ok {
		ts.skip(name, "storage key is not a string")
		return
	}
	soff, ok := c.Args[1].(int64)
	shape, ok2 := ints(c.Args[2])
	stride, ok3 := ints(c.Args[3])
	if !ok || !ok2 || !ok3 || soff < 0 || len(stride) != len(shape) {
		ts.skip(name, "bad storage offset, size or stride")
		return
	}
	numel := int64(1)
	for _, d := range shape {
		if d != 0 && numel > math.MaxInt64/16/d {
			ts.skip(name, "element count overflows")
			return
		}
		numel *= d
	}
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && stride[i] != want && numel != 0 {
			ts.skip(name, fmt.Sprintf("non-contiguous: size %v stride %v", shape, stride))
			return
		}
		want *= shape[i]
	}
	base, length, problem := ts.storage(key)
	if problem != "" {
		ts.skip(name, problem)
		return
	}
	if soff > length/es || numel > length/es-soff {
		ts.skip(name, fmt.Sprintf("elements [%d, +%d) exceed storage %s of %d bytes", soff, numel, key, length))
		return
	}
	ts.m.Tensors = append(ts.m.Tensors, formats.TensorInfo{Name: name, DType: dt, Shape: shape, File: ts.f.Path,
		Offset: base + soff*es, Length: numel * es})
}

// Match7z reports whether head starts a 7-Zip archive.
func Match7z(head []byte) bool {
	return bytes.HasPrefix(head, []byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c})
}

// Open7z reads a 7-Zip archive, which torch cannot load but a model can be shipped as
// (nullifAI): kensa does not unpack it, but finds pickles stored in it uncompressed by their
// bytes (PROTO 2-5) and records their code. The model has Format "7z" and no tensors.
func Open7z(f *formats.File) (*formats.Model, error) {
	data, err := f.Bytes(0, f.Size, nil)
	if err != nil {
		return nil, err
	}
	m := &formats.Model{Format: "7z", Path: f.Path, Files: []*formats.File{f}, Header: []formats.KV{{Key: "archive.unreadable", Value: "7-Zip archive: members are not unpacked"}}}
	Carve(data, 0, f.Path, "", m)
	return m, nil
}

// Carve finds pickle streams inside data by their PROTO opcode and adds their code to m
// (and a note per stream to m.Header).
func Carve(data []byte, base int64, file, member string, m *formats.Model) {
	tries := 0
	for i := 0; i+1 < len(data) && tries < 4096; i++ {
		if data[i] != 0x80 || data[i+1] < 2 || data[i+1] > 5 {
			continue
		}
		tries++
		s := pickle.Parse(data[i:], base+int64(i), file, member, pickle.Limits{MaxOps: 1 << 20})
		if s.Ops < 3 || len(s.Code) == 0 {
			continue
		}
		pickle.AddStreams(m, []*pickle.Stream{s}, member)
		if e := int(s.End - base); e > i {
			i = e - 1
		}
	}
}
