package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kensa-scan/kensa/scan"
)

func newRulesCmd(s *streams) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "rules",
		Short: "List the rule catalogue: id, default severity, detector, title and meaning",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			rules := scan.Rules()
			if asJSON {
				type jr struct {
					ID       string `json:"id"`
					Title    string `json:"title"`
					Severity string `json:"severity"`
					Detector string `json:"detector"`
					Help     string `json:"help"`
				}
				out := make([]jr, len(rules))
				for i, r := range rules {
					out[i] = jr{r.ID, r.Title, r.Severity.String(), r.Detector, r.Help}
				}
				enc := json.NewEncoder(s.out)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(s.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tDETECTOR\tTITLE")
			for _, r := range rules {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Severity, r.Detector, r.Title)
			}
			tw.Flush()
			fmt.Fprintln(s.out)
			for _, r := range rules {
				fmt.Fprintf(s.out, "%s — %s (%s)\n%s\n\n", r.ID, r.Title, r.Severity, wrap(r.Help, 92, "  "))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "write the catalogue as JSON")
	return c
}

// wrap breaks text into lines of at most width characters, each with the indent.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(text) {
		if len(line)+len(w)+1 > width && line != indent {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	return b.String()
}
