// Package pickle reads Python pickle streams (protocols 0-5) without importing or calling
// anything: a stack machine over every opcode that builds inert values (globals, calls,
// containers, persistent ids) and records every global a load would import and every call
// it would make, with the byte offset of its opcode. Memory, stack depth, memo size and
// opcode count are bounded; a stream that breaks keeps what was read before the break.
//
// A plain pickle file (.pkl, .joblib, or any file that starts like a pickle) registers as
// the "pickle" format.
package pickle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/kensa-scan/kensa/formats"
)

// Limits bound one parse. Zero fields take the defaults.
type Limits struct {
	MaxOps   int // opcodes per stream (default 8M)
	MaxStack int // items on the stack and in marks (default 1M)
	MaxMemo  int // memo entries (default 1M)
	MaxDepth int // nesting followed when walking or rendering values (default 64)
}

func (l Limits) withDefaults() Limits {
	if l.MaxOps <= 0 {
		l.MaxOps = 8 << 20
	}
	if l.MaxStack <= 0 {
		l.MaxStack = 1 << 20
	}
	if l.MaxMemo <= 0 {
		l.MaxMemo = 1 << 20
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 64
	}
	return l
}

// Values a stream builds. Python str is string, bytes and bytearray are Bytes, ints are
// int64 or *big.Int, floats float64, None nil, True/False bool.
type (
	// Bytes is a bytes or bytearray value; it aliases the stream's data.
	Bytes []byte
	// Tuple is a Python tuple.
	Tuple []any
	// List is a Python list.
	List struct{ Items []any }
	// Dict is a Python dict in insertion order.
	Dict struct{ Keys, Vals []any }
	// Set is a set or frozenset.
	Set struct{ Items []any }
	// Global is a module attribute named by GLOBAL, STACK_GLOBAL, INST or EXT.
	Global struct {
		Module, Name string
		Off          int64 // absolute offset of the opcode that named it
	}
	// Call is the result of calling Func with Args (REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX),
	// with the state BUILD gave it and the items SETITEM(S) and APPEND(S) added.
	Call struct {
		Func   any
		Args   Tuple
		Kwargs any
		Kind   string
		Off    int64
		State  any
		Dict   Dict
		List   []any
	}
	// PersID is a persistent id (PERSID, BINPERSID): a reference to data outside the stream.
	PersID struct {
		ID  any
		Off int64
	}
	// Buffer is an out-of-band buffer (NEXT_BUFFER).
	Buffer struct{ Off int64 }
)

// Stream is one parsed pickle.
type Stream struct {
	Start, End int64 // absolute offsets of the first byte and one past the STOP (or the break)
	Protocol   int
	Value      any   // what STOP returned (nil when the stream broke)
	Err        error // the break, a *formats.FormatError with its offset; nil after STOP
	Code       []formats.CodeRef
	PersIDs    []*PersID
	Ops        int
}

// Parse reads one pickle from data, whose first byte is at absolute offset base in file
// (member names the archive member, "" for a plain file). It never fails outright: a stream
// that breaks returns with Err set and the values and code seen before the break.
func Parse(data []byte, base int64, file, member string, lim Limits) *Stream {
	p := &parser{data: data, base: base, lim: lim.withDefaults(), file: file, member: member,
		memo: map[uint64]any{}}
	p.st = &Stream{Start: base}
	p.run()
	return p.st
}

// ParseAll reads the pickles that follow one another in data (a second pickle after STOP is
// read too, as some loaders and payloads do). It stops at the first stream that breaks, at
// the end of data, or at max streams.
func ParseAll(data []byte, base int64, file, member string, lim Limits, max int) []*Stream {
	var out []*Stream
	pos := 0
	for pos < len(data) && len(out) < max {
		s := Parse(data[pos:], base+int64(pos), file, member, lim)
		if s.Ops == 0 {
			break
		}
		out = append(out, s)
		if s.Err != nil || s.End <= s.Start {
			break
		}
		pos = int(s.End - base)
		if pos < len(data) && !LooksLikePickle(data[pos:]) {
			break
		}
	}
	return out
}

type parser struct {
	data   []byte
	base   int64
	pos    int
	lim    Limits
	file   string
	member string
	st     *Stream
	stack  []any
	marks  [][]any
	memo   map[uint64]any
	items  int
}

func (p *parser) fail(off int, err error, f string, a ...any) {
	if p.st.Err == nil {
		e := formats.Errorf("pickle", p.base+int64(off), err, f, a...)
		e.File = p.file
		if p.member != "" {
			e.Msg = p.member + ": " + e.Msg
		}
		p.st.Err = e
	}
}

type stop struct{}

func (p *parser) run() {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stop); !ok {
				panic(r)
			}
		}
		if p.st.End == 0 {
			p.st.End = p.base + int64(p.pos)
		}
	}()
	for {
		if p.pos >= len(p.data) {
			p.fail(p.pos, formats.ErrTruncated, "stream ends without STOP")
			return
		}
		if p.st.Ops >= p.lim.MaxOps {
			p.fail(p.pos, formats.ErrTooLarge, "more than %d opcodes", p.lim.MaxOps)
			return
		}
		off := p.pos
		op := p.data[p.pos]
		p.pos++
		p.st.Ops++
		if done := p.step(op, off); done {
			p.st.End = p.base + int64(p.pos)
			return
		}
	}
}

// abort stops the stream with an error at off.
func (p *parser) abort(off int, err error, f string, a ...any) {
	p.fail(off, err, f, a...)
	panic(stop{})
}

func (p *parser) need(off, n int) []byte {
	if n < 0 || n > len(p.data)-p.pos {
		p.abort(off, formats.ErrTruncated, "opcode 0x%02x needs %d bytes, %d left", p.data[off], n, len(p.data)-p.pos)
	}
	b := p.data[p.pos : p.pos+n]
	p.pos += n
	return b
}

func (p *parser) line(off int) string {
	for i := p.pos; i < len(p.data); i++ {
		if p.data[i] == '\n' {
			s := string(p.data[p.pos:i])
			p.pos = i + 1
			return strings.TrimSuffix(s, "\r")
		}
	}
	p.abort(off, formats.ErrTruncated, "opcode %q: line without newline", p.data[off])
	return ""
}

func (p *parser) push(v any, off int) {
	if len(p.stack)+p.items >= p.lim.MaxStack {
		p.abort(off, formats.ErrTooLarge, "more than %d stack items", p.lim.MaxStack)
	}
	p.stack = append(p.stack, v)
}

func (p *parser) pop(off int) any {
	if len(p.stack) == 0 {
		p.abort(off, formats.ErrInvalid, "opcode 0x%02x pops an empty stack", p.data[off])
	}
	v := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	return v
}

func (p *parser) top(off int) any {
	if len(p.stack) == 0 {
		p.abort(off, formats.ErrInvalid, "opcode 0x%02x reads an empty stack", p.data[off])
	}
	return p.stack[len(p.stack)-1]
}

// popMark returns the items pushed since the last MARK and restores the stack before it.
func (p *parser) popMark(off int) []any {
	if len(p.marks) == 0 {
		p.abort(off, formats.ErrInvalid, "opcode 0x%02x without MARK", p.data[off])
	}
	items := p.stack
	p.stack = p.marks[len(p.marks)-1]
	p.marks = p.marks[:len(p.marks)-1]
	p.items -= len(p.stack)
	return items
}

func (p *parser) memoPut(idx uint64, off int) {
	if len(p.memo) >= p.lim.MaxMemo {
		if _, ok := p.memo[idx]; !ok {
			p.abort(off, formats.ErrTooLarge, "more than %d memo entries", p.lim.MaxMemo)
		}
	}
	p.memo[idx] = p.top(off)
}

func (p *parser) memoGet(idx uint64, off int) {
	v, ok := p.memo[idx]
	if !ok {
		p.abort(off, formats.ErrInvalid, "memo key %d is not defined", idx)
	}
	p.push(v, off)
}

func (p *parser) code(c formats.CodeRef, off int) {
	c.File, c.Member, c.Offset = p.file, p.member, p.base+int64(off)
	if len(p.st.Code) < 1<<16 {
		p.st.Code = append(p.st.Code, c)
	}
}

func (p *parser) global(mod, name, kind string, off int) *Global {
	g := &Global{Module: mod, Name: name, Off: p.base + int64(off)}
	p.code(formats.CodeRef{Module: mod, Name: name, Kind: kind}, off)
	return g
}

// call records a call of fn with args and returns the resulting object.
func (p *parser) call(fn any, args Tuple, kw any, kind string, off int) *Call {
	c := &Call{Func: fn, Args: args, Kwargs: kw, Kind: kind, Off: p.base + int64(off)}
	mod, name := Callee(fn, args, p.lim.MaxDepth)
	if inner, ok := fn.(*Call); ok {
		if g, ok := inner.Func.(*Global); ok {
			kind += " of " + g.Module + "." + g.Name + " result"
		}
	}
	p.code(formats.CodeRef{Module: mod, Name: name, Kind: kind, Called: true, Args: Render(args, p.lim.MaxDepth)}, off)
	return c
}

// Callee names what is called: a global's module and name, or, for a call of a call's
// result, "" and a description.
func Callee(fn any, _ Tuple, depth int) (string, string) {
	switch f := fn.(type) {
	case *Global:
		return f.Module, f.Name
	case *Call:
		if m, n, ok := dynamicTarget(f, depth); ok {
			return m, n
		}
		return "", "result of " + Render(f, 3)
	}
	return "", "value " + Render(fn, 3)
}

// dynamicTarget resolves getattr(obj, "name"), dict.get(obj, "name"), obj.__getattribute__
// and similar lookups to the module (or object) and attribute they reach.
func dynamicTarget(c *Call, depth int) (string, string, bool) {
	g, ok := c.Func.(*Global)
	if !ok || len(c.Args) < 2 || depth <= 0 {
		return "", "", false
	}
	attr, ok := c.Args[1].(string)
	if !ok {
		return "", "", false
	}
	last := g.Name
	if i := strings.LastIndexByte(last, '.'); i >= 0 {
		last = last[i+1:]
	}
	switch last {
	case "getattr", "get", "__getattribute__", "__getitem__", "getitem", "attrgetter", "pop", "setdefault":
	default:
		return "", "", false
	}
	return ObjectName(c.Args[0], depth-1), attr, true
}

// ObjectName names what a value stands for as a module path: a global "numpy.__builtins__",
// an __import__("os") call "os", a nested lookup "os.path".
func ObjectName(v any, depth int) string {
	switch o := v.(type) {
	case *Global:
		if o.Module == "" {
			return o.Name
		}
		return o.Module + "." + o.Name
	case string:
		return o
	case *Call:
		if g, ok := o.Func.(*Global); ok && depth > 0 {
			if strings.HasSuffix(g.Name, "__import__") || g.Name == "import_module" || strings.HasSuffix(g.Name, "load_module") {
				if len(o.Args) > 0 {
					if s, ok := o.Args[0].(string); ok {
						return s
					}
				}
			}
		}
		if m, n, ok := dynamicTarget(o, depth-1); ok {
			return m + "." + n
		}
	}
	return "?"
}

func (p *parser) step(op byte, off int) bool {
	switch op {
	case 0x80: // PROTO
		v := int(p.need(off, 1)[0])
		if v > 5 {
			p.abort(off, formats.ErrUnsupported, "pickle protocol %d", v)
		}
		if off == 0 {
			p.st.Protocol = v
		}
	case 0x95: // FRAME
		n := binary.LittleEndian.Uint64(p.need(off, 8))
		if n > uint64(len(p.data)-p.pos) {
			p.abort(off, formats.ErrTruncated, "frame of %d bytes, %d left", n, len(p.data)-p.pos)
		}
	case '.': // STOP
		p.st.Value = p.pop(off)
		return true
	case '(':
		if len(p.marks) >= p.lim.MaxStack/2 {
			p.abort(off, formats.ErrTooLarge, "too many nested MARKs")
		}
		p.items += len(p.stack)
		p.marks = append(p.marks, p.stack)
		p.stack = make([]any, 0, 4)
	case '0':
		if len(p.stack) == 0 && len(p.marks) > 0 {
			p.popMark(off)
		} else {
			p.pop(off)
		}
	case '1':
		p.popMark(off)
	case '2':
		p.push(p.top(off), off)
	case 'N':
		p.push(nil, off)
	case 0x88:
		p.push(true, off)
	case 0x89:
		p.push(false, off)
	case 'I':
		s := p.line(off)
		switch s {
		case "00":
			p.push(false, off)
		case "01":
			p.push(true, off)
		default:
			p.push(parseInt(s), off)
		}
	case 'J':
		p.push(int64(int32(binary.LittleEndian.Uint32(p.need(off, 4)))), off)
	case 'K':
		p.push(int64(p.need(off, 1)[0]), off)
	case 'M':
		p.push(int64(binary.LittleEndian.Uint16(p.need(off, 2))), off)
	case 'L':
		p.push(parseInt(strings.TrimSuffix(p.line(off), "L")), off)
	case 0x8a, 0x8b:
		n := 1
		if op == 0x8b {
			n = 4
		}
		b := p.need(off, n)
		ln := int(b[0])
		if op == 0x8b {
			ln = int(int32(binary.LittleEndian.Uint32(b)))
		}
		p.push(decodeLong(p.need(off, ln)), off)
	case 'F':
		f, _ := strconv.ParseFloat(p.line(off), 64)
		p.push(f, off)
	case 'G':
		p.push(math.Float64frombits(binary.BigEndian.Uint64(p.need(off, 8))), off)
	case 'S':
		p.push(unquote(p.line(off)), off)
	case 'V':
		p.push(p.line(off), off)
	case 'T', 'U', 'B', 'C', 'X', 0x8c, 0x8d, 0x8e, 0x96:
		var n uint64
		switch op {
		case 'U', 'C', 0x8c:
			n = uint64(p.need(off, 1)[0])
		case 'T', 'B', 'X':
			n = uint64(binary.LittleEndian.Uint32(p.need(off, 4)))
			if op == 'T' && int32(n) < 0 {
				p.abort(off, formats.ErrInvalid, "negative string length")
			}
		default:
			n = binary.LittleEndian.Uint64(p.need(off, 8))
		}
		if n > uint64(len(p.data)-p.pos) {
			p.abort(off, formats.ErrTruncated, "string of %d bytes, %d left", n, len(p.data)-p.pos)
		}
		b := p.need(off, int(n))
		switch op {
		case 'X', 0x8c, 0x8d, 'T', 'U':
			p.push(string(b), off)
		default:
			p.push(Bytes(b), off)
		}
	case 0x97:
		p.push(&Buffer{Off: p.base + int64(off)}, off)
	case 0x98:
		p.top(off)
	case ')':
		p.push(Tuple{}, off)
	case 't':
		p.push(Tuple(p.popMark(off)), off)
	case 0x85, 0x86, 0x87:
		n := int(op - 0x84)
		if len(p.stack) < n {
			p.abort(off, formats.ErrInvalid, "TUPLE%d with %d items on the stack", n, len(p.stack))
		}
		t := make(Tuple, n)
		for i := n - 1; i >= 0; i-- {
			t[i] = p.pop(off)
		}
		p.push(t, off)
	case ']':
		p.push(&List{}, off)
	case 'l':
		p.push(&List{Items: p.popMark(off)}, off)
	case '}':
		p.push(&Dict{}, off)
	case 'd':
		items := p.popMark(off)
		d := &Dict{}
		for i := 0; i+1 < len(items); i += 2 {
			d.Keys, d.Vals = append(d.Keys, items[i]), append(d.Vals, items[i+1])
		}
		p.push(d, off)
	case 0x8f:
		p.push(&Set{}, off)
	case 0x91:
		p.push(&Set{Items: p.popMark(off)}, off)
	case 0x90:
		items := p.popMark(off)
		if s, ok := p.top(off).(*Set); ok {
			s.Items = append(s.Items, items...)
		}
	case 'a':
		v := p.pop(off)
		p.appendTo(p.top(off), []any{v})
	case 'e':
		items := p.popMark(off)
		p.appendTo(p.top(off), items)
	case 's':
		v := p.pop(off)
		k := p.pop(off)
		p.setItems(p.top(off), []any{k, v})
	case 'u':
		items := p.popMark(off)
		p.setItems(p.top(off), items)
	case 'p':
		p.memoPut(uint64(parseUint(p.line(off))), off)
	case 'q':
		p.memoPut(uint64(p.need(off, 1)[0]), off)
	case 'r':
		p.memoPut(uint64(binary.LittleEndian.Uint32(p.need(off, 4))), off)
	case 0x94:
		p.memoPut(uint64(len(p.memo)), off)
	case 'g':
		p.memoGet(uint64(parseUint(p.line(off))), off)
	case 'h':
		p.memoGet(uint64(p.need(off, 1)[0]), off)
	case 'j':
		p.memoGet(uint64(binary.LittleEndian.Uint32(p.need(off, 4))), off)
	case 'c':
		mod := p.line(off)
		name := p.line(off)
		p.push(p.global(mod, name, "GLOBAL", off), off)
	case 0x93:
		name, ok1 := p.pop(off).(string)
		mod, ok2 := p.pop(off).(string)
		if !ok1 || !ok2 {
			p.abort(off, formats.ErrInvalid, "STACK_GLOBAL of values that are not strings")
		}
		p.push(p.global(mod, name, "STACK_GLOBAL", off), off)
	case 0x82, 0x83, 0x84:
		b := p.need(off, 1<<(op-0x82)) // EXT1, EXT2, EXT4: 1, 2 or 4 bytes
		var code uint32
		switch len(b) {
		case 1:
			code = uint32(b[0])
		case 2:
			code = uint32(binary.LittleEndian.Uint16(b))
		default:
			code = binary.LittleEndian.Uint32(b)
		}
		p.push(p.global("copyreg", fmt.Sprintf("extension code %d", code), "EXT", off), off)
	case 'R':
		args := p.pop(off)
		fn := p.pop(off)
		p.push(p.call(fn, asTuple(args), nil, "REDUCE", off), off)
	case 'i':
		mod := p.line(off)
		name := p.line(off)
		args := p.popMark(off)
		g := p.global(mod, name, "INST", off)
		p.push(p.call(g, Tuple(args), nil, "INST", off), off)
	case 'o':
		items := p.popMark(off)
		if len(items) == 0 {
			p.abort(off, formats.ErrInvalid, "OBJ without a class")
		}
		p.push(p.call(items[0], Tuple(items[1:]), nil, "OBJ", off), off)
	case 0x81:
		args := p.pop(off)
		cls := p.pop(off)
		p.push(p.call(cls, asTuple(args), nil, "NEWOBJ", off), off)
	case 0x92:
		kw := p.pop(off)
		args := p.pop(off)
		cls := p.pop(off)
		p.push(p.call(cls, asTuple(args), kw, "NEWOBJ_EX", off), off)
	case 'b':
		state := p.pop(off)
		obj := p.top(off)
		p.build(obj, state, off)
	case 'P':
		id := &PersID{ID: p.line(off), Off: p.base + int64(off)}
		p.st.PersIDs = append(p.st.PersIDs, id)
		p.push(id, off)
	case 'Q':
		id := &PersID{ID: p.pop(off), Off: p.base + int64(off)}
		p.st.PersIDs = append(p.st.PersIDs, id)
		p.push(id, off)
	default:
		p.abort(off, formats.ErrInvalid, "unknown opcode 0x%02x", op)
	}
	return false
}

func (p *parser) build(obj, state any, off int) {
	c, ok := obj.(*Call)
	if !ok {
		if g, ok := obj.(*Global); ok {
			// BUILD on a class or function object sets attributes on it (or calls its __setstate__).
			p.code(formats.CodeRef{Module: g.Module, Name: g.Name, Kind: "BUILD", Called: true, Args: Render(state, p.lim.MaxDepth)}, off)
		}
		return
	}
	c.State = state
	if g, ok := c.Func.(*Global); ok && strings.HasSuffix(g.Module, "numpy_pickle") && g.Name == "NumpyArrayWrapper" {
		p.joblibArray(c, off)
	}
}

// joblibArray skips the array bytes joblib writes into the stream after a
// NumpyArrayWrapper's BUILD (and reads the nested pickle of an object array).
func (p *parser) joblibArray(c *Call, off int) {
	st, ok := c.State.(*Dict)
	if !ok {
		return
	}
	get := func(k string) any {
		for i, key := range st.Keys {
			if key == k {
				return st.Vals[i]
			}
		}
		return nil
	}
	n := int64(1)
	if shape, ok := get("shape").(Tuple); ok {
		for _, d := range shape {
			v, ok := d.(int64)
			if !ok || v < 0 || (v > 0 && n > math.MaxInt64/v) {
				p.abort(off, formats.ErrInvalid, "joblib array with a bad shape")
			}
			n *= v
		}
	}
	item := int64(0)
	if dt, ok := get("dtype").(*Call); ok && len(dt.Args) > 0 {
		if s, ok := dt.Args[0].(string); ok {
			item = dtypeSize(s)
		}
	}
	if al, ok := get("numpy_array_alignment_bytes").(int64); ok && al > 0 {
		pad := int(p.need(off, 1)[0])
		p.need(off, pad)
	}
	if item == 0 {
		// an object array: joblib reads a nested pickle here
		sub := Parse(p.data[p.pos:], p.base+int64(p.pos), p.file, p.member, p.lim)
		p.st.Code = append(p.st.Code, sub.Code...)
		if sub.Err != nil {
			p.st.Err = sub.Err
			panic(stop{})
		}
		p.pos = int(sub.End - p.base)
		return
	}
	if n > math.MaxInt64/item || n*item > int64(len(p.data)-p.pos) {
		p.abort(off, formats.ErrTruncated, "joblib array of %d x %d bytes, %d left", n, item, len(p.data)-p.pos)
	}
	p.pos += int(n * item)
}

func dtypeSize(s string) int64 {
	s = strings.TrimLeft(s, "<>=|")
	if s == "" || s[0] == 'O' {
		return 0
	}
	if s == "?" || s == "b" || s == "B" {
		return 1
	}
	v, err := strconv.Atoi(s[1:])
	if err != nil || v <= 0 {
		return 0
	}
	if s[0] == 'U' {
		return int64(v) * 4
	}
	return int64(v)
}

func (p *parser) appendTo(obj any, items []any) {
	switch o := obj.(type) {
	case *List:
		o.Items = append(o.Items, items...)
	case *Call:
		o.List = append(o.List, items...)
	}
}

func (p *parser) setItems(obj any, items []any) {
	var d *Dict
	switch o := obj.(type) {
	case *Dict:
		d = o
	case *Call:
		d = &o.Dict
	default:
		return
	}
	for i := 0; i+1 < len(items); i += 2 {
		d.Keys, d.Vals = append(d.Keys, items[i]), append(d.Vals, items[i+1])
	}
}

func asTuple(v any) Tuple {
	switch t := v.(type) {
	case Tuple:
		return t
	case *List:
		return Tuple(t.Items)
	case nil:
		return nil
	}
	return Tuple{v}
}

func parseInt(s string) any {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v
	}
	if len(s) > 4096 {
		return s
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return s
	}
	return b
}

func parseUint(s string) uint32 {
	v, _ := strconv.ParseUint(s, 10, 32)
	return uint32(v)
}

func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if b[len(b)-1]&0x80 != 0 && len(b) < 8 {
			v |= ^uint64(0) << (8 * uint(len(b)))
		}
		return int64(v)
	}
	if len(b) > 4096 {
		return fmt.Sprintf("long of %d bytes", len(b))
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	x := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return x
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		if u, err := strconv.Unquote("\"" + strings.ReplaceAll(s[1:len(s)-1], "\"", "\\\"") + "\""); err == nil {
			return u
		}
		return s[1 : len(s)-1]
	}
	return s
}

// Render prints a value for evidence, bounded in depth and length.
func Render(v any, depth int) string {
	var b strings.Builder
	render(&b, v, depth)
	s := b.String()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func render(b *strings.Builder, v any, depth int) {
	if b.Len() > 220 {
		return
	}
	if depth <= 0 {
		b.WriteString("...")
		return
	}
	list := func(open, close string, items []any) {
		b.WriteString(open)
		for i, it := range items {
			if i > 0 {
				b.WriteString(", ")
			}
			if b.Len() > 220 {
				b.WriteString("...")
				break
			}
			render(b, it, depth-1)
		}
		b.WriteString(close)
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case string:
		if len(x) > 120 {
			x = x[:120] + "..."
		}
		b.WriteString(strconv.Quote(x))
	case Bytes:
		fmt.Fprintf(b, "<%d bytes>", len(x))
	case Tuple:
		list("(", ")", x)
	case *List:
		list("[", "]", x.Items)
	case *Set:
		list("{", "}", x.Items)
	case *Dict:
		b.WriteString("{")
		for i := range x.Keys {
			if i > 0 {
				b.WriteString(", ")
			}
			if b.Len() > 220 {
				b.WriteString("...")
				break
			}
			render(b, x.Keys[i], depth-1)
			b.WriteString(": ")
			render(b, x.Vals[i], depth-1)
		}
		b.WriteString("}")
	case *Global:
		b.WriteString(x.Module + "." + x.Name)
	case *Call:
		render(b, x.Func, depth-1)
		list("(", ")", x.Args)
	case *PersID:
		b.WriteString("persistent_id")
		render(b, x.ID, depth-1)
	case *big.Int:
		b.WriteString(x.String())
	default:
		fmt.Fprint(b, x)
	}
}

// LooksLikePickle reports whether data plausibly starts a pickle: PROTO 2-5, or a protocol
// 0/1 opening (a GLOBAL with a module name, or MARK/EMPTY_DICT/EMPTY_LIST followed by a
// pickle opcode).
func LooksLikePickle(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	if b[0] == 0x80 {
		return b[1] >= 2 && b[1] <= 5
	}
	switch b[0] {
	case 'c':
		i := 1
		for i < len(b) && (isIdent(b[i]) || b[i] == '.') {
			i++
		}
		return i > 1 && i < len(b) && b[i] == '\n' && !(b[1] >= '0' && b[1] <= '9')
	case '(':
		return strings.IndexByte("dltcNIKJMXUTGSVF]}(", b[1]) >= 0 && (len(b) < 3 || b[1] != '(' || b[2] == '(' || b[2] == 'd' || b[2] == 'l')
	case '}', ']':
		return b[1] == 'q' || b[1] == '(' || b[1] == 'r' || b[1] == 0x94
	}
	return false
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ErrNotPickle is returned by Open for a file that does not start like a pickle.
var ErrNotPickle = errors.New("not a pickle")
