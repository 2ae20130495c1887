package scan_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/kensa-scan/kensa/scan"
)

// truncateOnStart truncates one file when the engine starts its tensor pass: the file is
// mapped by then, so the pass reads pages that no longer exist (SIGBUS).
type truncateOnStart struct {
	t      *testing.T
	victim string
	done   bool
}

func (p *truncateOnStart) Start(target string, _ int64) {
	if target == p.victim && !p.done {
		p.done = true
		if err := os.Truncate(p.victim, 100); err != nil {
			p.t.Error(err)
		}
	}
}
func (p *truncateOnStart) Add(int64) {}
func (p *truncateOnStart) Done()     {}

// A file truncated while it is mapped and scanned is an error target, not a crash; the
// other targets are scanned and reported.
func TestTruncatedWhileScanned(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.gguf", "victim.gguf", "z.gguf"} {
		write(t, filepath.Join(dir, n), ggufBytes(t, 11))
	}
	victim := filepath.Join(dir, "victim.gguf")
	for _, noHash := range []bool{true, false} {
		write(t, victim, ggufBytes(t, 11))
		pr := &truncateOnStart{t: t, victim: victim}
		rep, err := scan.Run(context.Background(), []string{dir}, scan.Options{Jobs: 2, ChunkElems: 512, Progress: pr, NoHash: noHash})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Targets) != 3 {
			t.Fatalf("%d targets", len(rep.Targets))
		}
		for _, tg := range rep.Targets {
			if tg.Path == victim {
				if tg.Error == "" || !tg.Incomplete || !strings.Contains(tg.Error, "truncated") {
					t.Errorf("no-hash %v: truncated target: error %q incomplete %v", noHash, tg.Error, tg.Incomplete)
				}
				continue
			}
			if tg.Error != "" || tg.Incomplete {
				t.Errorf("%s: error %q", tg.Path, tg.Error)
			}
		}
	}
}

// An unreadable directory under -r is an error target and the walk goes on. Root reads
// every directory, so as root the test re-runs itself as the unprivileged user nobody.
func TestUnreadableDirectory(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no unix permissions")
	}
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestUnreadableDirectory")
		return
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a", "model.gguf"), ggufBytes(t, 1))
	write(t, filepath.Join(dir, "locked", "model.gguf"), ggufBytes(t, 2))
	write(t, filepath.Join(dir, "z", "model.gguf"), ggufBytes(t, 3))
	write(t, filepath.Join(dir, "z", "secret.gguf"), ggufBytes(t, 4))
	if err := os.Chmod(filepath.Join(dir, "z", "secret.gguf"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Join(dir, "locked"), 0o755)
	rep := scanAll(t, scan.Options{Recursive: true}, dir)
	got := map[string]string{}
	for _, tg := range rep.Targets {
		rel, _ := filepath.Rel(dir, tg.Path)
		got[rel] = tg.Error
	}
	if len(got) != 4 || got["a/model.gguf"] != "" || got["z/model.gguf"] != "" ||
		!strings.Contains(got["locked"], "permission denied") || !strings.Contains(got["z/secret.gguf"], "permission denied") {
		t.Errorf("targets %q", got)
	}
}

// runAsNobody re-runs one test of this test binary as the user nobody (uid 65534), from a
// copy of the binary that user can execute.
func runAsNobody(t *testing.T, test string) {
	t.Helper()
	if os.Getenv("KENSA_AS_NOBODY") != "" {
		t.Fatal("still root after dropping privileges")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp("", "kensa-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "scan.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(tmp, "tmp")
	if err := os.Mkdir(work, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(work, 0o1777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "KENSA_AS_NOBODY=1", "HOME="+work, "TMPDIR="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("%s as nobody: %v", test, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s did not pass as nobody", test)
	}
}
