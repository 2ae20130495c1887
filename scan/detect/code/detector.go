// Package code judges what loading a model would import or call (formats.Model.Code, as
// the pickle, PyTorch and other readers record it): a global that runs code or reaches the
// system is critical, one kensa does not know is medium, one that checkpoints need is
// nothing. It also reports archives kensa cannot unpack and pickle streams that break.
package code

import (
	"context"
	"fmt"

	"github.com/kensa-scan/kensa/formats/pickle"
	"github.com/kensa-scan/kensa/scan"
)

// Rule ids.
const (
	RuleExec       = "KS-CODE-EXEC"
	RuleUnknown    = "KS-CODE-UNKNOWN-GLOBAL"
	RuleArchive    = "KS-CODE-UNREADABLE-ARCHIVE"
	RuleBrokenPick = "KS-CODE-BROKEN-PICKLE"
)

const detectorName = "code"

var rules = []scan.Rule{
	{ID: RuleExec, Title: "loading the model runs code or reaches the system", Severity: scan.Critical, Detector: detectorName,
		Help: "A pickle in the model imports or calls a function that runs commands or code, opens files or network " +
			"connections, or reaches such a function dynamically (os/posix/nt.system, subprocess, builtins eval/exec/" +
			"compile/getattr/__import__/open, runpy, importlib, marshal, pip, webbrowser, socket, shutil and their aliases, " +
			"also when reached through getattr, dict.get or __builtins__). torch.load without weights_only=True, " +
			"pickle.load, joblib.load and numpy.load(allow_pickle=True) execute it the moment the file is opened. Evidence " +
			"gives the module, name, how it is reached (GLOBAL, STACK_GLOBAL, REDUCE, INST, OBJ, NEWOBJ, BUILD), the " +
			"archive member and the call's arguments; the location is the opcode's byte offset. Do not load the file; " +
			"obtain the weights as safetensors from a trusted source."},
	{ID: RuleUnknown, Title: "pickle imports a global outside the known-safe set", Severity: scan.Medium, Detector: detectorName,
		Help: "A pickle names a module attribute that is neither needed by ordinary torch, numpy and collections " +
			"checkpoints nor known to run code: typically the user's own model class (a whole pickled nn.Module), " +
			"which loading imports from the local Python path. It is not proof of a payload, but loading it runs " +
			"whatever that name resolves to. Check that the name is the class you expect, or load with " +
			"torch.load(weights_only=True) or convert to safetensors."},
	{ID: RuleArchive, Title: "model packed in an archive kensa cannot unpack", Severity: scan.High, Detector: detectorName,
		Help: "The file is a 7-Zip (or other non-zip) archive although it is named as a model. torch.load cannot read it " +
			"as such, but the nullifAI campaign (2025) shipped PyTorch pickles this way to evade scanners, and loaders " +
			"that unpack it first run the pickles inside. kensa searched its bytes for stored pickles (reported " +
			"separately) but cannot verify its contents: treat it as unverified."},
	{ID: RuleBrokenPick, Title: "pickle stream breaks before its end", Severity: scan.Medium, Detector: detectorName,
		Help: "A pickle stream of the model stops with an invalid or truncated opcode. Python's unpickler executes " +
			"every opcode before the break, so a payload placed first still runs even though loading then fails " +
			"(the nullifAI broken-pickle trick). Findings before the break are reported; the location is the break."},
}

// Detector is the code detector.
type Detector struct{}

func init() { scan.RegisterDetector(Detector{}) }

// Name returns "code".
func (Detector) Name() string { return detectorName }

// Rules returns the rules the detector reports.
func (Detector) Rules() []scan.Rule { return append([]scan.Rule(nil), rules...) }

func rule(id string) scan.Rule {
	for _, r := range rules {
		if r.ID == id {
			return r
		}
	}
	return scan.Rule{ID: id}
}

// Header judges m.Code.
func (Detector) Header(ctx context.Context, m *scan.Model, emit scan.Emit) error {
	if m.Model == nil {
		return nil
	}
	type key struct{ path, file, member string }
	unknown := map[key]bool{}
	deniedImport := map[key]bool{}
	deniedCall := map[key]bool{}
	for _, c := range m.Code {
		v, full := Judge(c.Module, c.Name)
		if c.Module == "" && v == Unknown {
			continue // a call of a value that is not a global: the callee is judged on its own
		}
		k := key{full, c.File, c.Member}
		if v == Denied && c.Called {
			deniedCall[k] = true
		}
	}
	for _, c := range m.Code {
		if err := ctx.Err(); err != nil {
			return err
		}
		v, full := Judge(c.Module, c.Name)
		if c.Module == "" && v == Unknown {
			continue
		}
		k := key{full, c.File, c.Member}
		ev := map[string]any{"module": c.Module, "name": c.Name, "kind": c.Kind, "called": c.Called}
		if c.Member != "" {
			ev["member"] = c.Member
		}
		if c.Args != "" {
			ev["args"] = c.Args
		}
		loc := scan.Location{File: c.File, Layer: -1, Key: c.Member, ByteOffset: c.Offset, ByteLength: 1}
		switch v {
		case Denied:
			if !c.Called {
				if deniedCall[k] || deniedImport[k] {
					continue
				}
				deniedImport[k] = true
			}
			r := rule(RuleExec)
			what := "imports"
			if c.Called {
				what = "calls"
			}
			msg := fmt.Sprintf("loading %s %s %s (%s at byte %d", c.File, what, full, c.Kind, c.Offset)
			if c.Member != "" {
				msg += " of member " + c.Member
			}
			msg += ")"
			if c.Called && c.Args != "" {
				msg += " with " + c.Args
			}
			emit(scan.Finding{Rule: r.ID, Title: r.Title, Severity: r.Severity, Score: 1, Location: loc, Evidence: ev, Message: msg})
		case Unknown:
			if unknown[k] {
				continue
			}
			unknown[k] = true
			r := rule(RuleUnknown)
			emit(scan.Finding{Rule: r.ID, Title: r.Title, Severity: r.Severity, Score: 0.5, Location: loc, Evidence: ev,
				Message: fmt.Sprintf("a pickle in %s imports %s (%s at byte %d), which kensa does not know to be safe", c.File, full, c.Kind, c.Offset)})
		}
	}
	file := ""
	if len(m.Files) > 0 {
		file = m.Files[0].Path
	}
	if m.Format == "7z" {
		r := rule(RuleArchive)
		emit(scan.Finding{Rule: r.ID, Title: r.Title, Severity: r.Severity, Score: 0.8, Location: scan.Location{File: file, Layer: -1},
			Evidence: map[string]any{"format": m.Format}, Message: fmt.Sprintf("%s is a %s archive, not a model file kensa can read", file, m.Format)})
	}
	for _, kv := range m.Header {
		if kv.Key == pickle.BreakKey {
			r := rule(RuleBrokenPick)
			emit(scan.Finding{Rule: r.ID, Title: r.Title, Severity: r.Severity, Score: 0.5, Location: scan.Location{File: file, Layer: -1, ByteOffset: kv.Offset, ByteLength: 1},
				Evidence: map[string]any{"error": kv.Value}, Message: fmt.Sprintf("a pickle stream breaks: %v", kv.Value)})
		}
	}
	return nil
}
