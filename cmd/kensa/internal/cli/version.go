package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

func newVersionCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kensa's version",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(s.out, "kensa %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
