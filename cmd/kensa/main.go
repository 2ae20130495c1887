// Command kensa inspects AI model weight files (safetensors, GGUF) for backdoors, triggers,
// hidden payloads and tampering. See `kensa --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kensa-scan/kensa/cmd/kensa/internal/cli"
)

// hardStop is how long after the first SIGINT or SIGTERM the process exits whatever it is
// doing; the scan writes its report before then (cli.InterruptGrace).
const hardStop = 1900 * time.Millisecond

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		select {
		case <-sigs:
			fmt.Fprintln(os.Stderr, "kensa: interrupted again: exiting now")
		case <-time.After(hardStop):
			fmt.Fprintln(os.Stderr, "kensa: interrupted: exiting")
		}
		os.Exit(cli.ExitInterrupted)
	}()
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(code)
}
