// Command kensa inspects AI model weight files (safetensors, GGUF) for backdoors, triggers,
// hidden payloads and tampering. See `kensa --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kensa-scan/kensa/cmd/kensa/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
