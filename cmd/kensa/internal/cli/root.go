// Package cli implements kensa's command line: one file per command, each with an options
// struct and a run function that writes to the given streams, and the one place (exitCode)
// that maps errors to exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/kensa-scan/kensa/formats"
	_ "github.com/kensa-scan/kensa/formats/gguf"        // registers GGUF with formats.Open
	_ "github.com/kensa-scan/kensa/formats/safetensors" // registers safetensors with formats.Open
)

// Version is kensa's version, set at build time with -ldflags "-X ...cli.Version=...".
var Version = "0.1.0-dev"

// Exit codes (DESIGN.md §3).
const (
	ExitOK          = 0   // nothing at or above --fail-on
	ExitFindings    = 1   // findings at or above --fail-on
	ExitUsage       = 2   // bad command line
	ExitTarget      = 3   // a target could not be read (malformed file, I/O error)
	ExitInternal    = 4   // a bug in kensa
	ExitInterrupted = 130 // interrupted (SIGINT / SIGTERM)
)

// usageError marks a bad command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// targetError marks a target that could not be read.
type targetError struct {
	path string
	err  error
}

func (e targetError) Error() string { return e.err.Error() }
func (e targetError) Unwrap() error { return e.err }

// errFindings is returned by commands whose result is findings at or above --fail-on; its
// message has already been printed as the report.
var errFindings = errors.New("findings at or above the --fail-on level")

// streams are a command's standard streams.
type streams struct {
	in          io.Reader
	out, errOut io.Writer
}

// Main runs kensa with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := &streams{in: stdin, out: stdout, errOut: stderr}
	root := newRootCmd(s)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	return exitCode(ctx, err, stderr)
}

func newRootCmd(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kensa",
		Short: "Inspect AI model weights for backdoors, triggers, hidden payloads and tampering",
		Long: `kensa (検査, "inspection") reads AI model weight files — safetensors (single or
sharded) and GGUF (v1-v3, every ggml type) — and inspects the weights themselves for
backdoors, triggers, hidden payloads and tampering. It never executes anything from a file
and never trusts a size, count or offset a file declares.

Exit codes: 0 nothing at or above --fail-on, 1 findings at or above --fail-on, 2 usage
error, 3 a target could not be read, 4 internal error, 130 interrupted.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       Version,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(newScanCmd(s), newDiffCmd(s), newInspectCmd(s), newGenerateCmd(s), newRulesCmd(s), newBenchCmd(s), newVersionCmd(s))
	return root
}

// exactArgs is cobra.ExactArgs reporting a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(c, args); err != nil {
			return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
		}
		return nil
	}
}

// exitCode prints err (if any) and returns the exit code it maps to.
func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	var (
		ue usageError
		te targetError
		fe *formats.FormatError
	)
	switch {
	case errors.Is(err, errFindings):
		return ExitFindings
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		fmt.Fprintln(stderr, "kensa: interrupted")
		return ExitInterrupted
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "kensa:", err)
		return ExitUsage
	case errors.As(err, &te), errors.As(err, &fe), errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission), errors.Is(err, formats.ErrNoModel):
		fmt.Fprintln(stderr, "kensa:", err)
		return ExitTarget
	case isUnknownCommand(err):
		fmt.Fprintln(stderr, "kensa:", err)
		return ExitUsage
	}
	fmt.Fprintln(stderr, "kensa: internal error:", err)
	return ExitInternal
}

// isUnknownCommand recognises cobra's errors for unknown commands, which it does not type.
func isUnknownCommand(err error) bool {
	msg := err.Error()
	return len(msg) > 16 && msg[:16] == "unknown command "
}
