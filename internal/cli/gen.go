package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// genCmd writes the man pages and shell completions generated from the
// command tree, for `make install` and packagers.
func genCmd(g *globals, root func() *cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: "gen", Short: "write man pages and shell completions (for packaging)", Hidden: true, Args: noArgs}
	man := &cobra.Command{
		Use: "man DIR", Short: "write a man page (section 1) for every command into DIR", Args: exactArgs(1, "a directory"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			now := time.Now()
			if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" { // reproducible builds
				var sec int64
				if _, err := fmt.Sscan(s, &sec); err == nil {
					now = time.Unix(sec, 0)
				}
			}
			r := root()
			r.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Title: "VIGIL", Section: "1", Source: "vigil", Manual: "vigil manual", Date: &now}
			if err := doc.GenManTree(r, hdr, args[0]); err != nil {
				return err
			}
			n, _ := filepath.Glob(filepath.Join(args[0], "*.1"))
			fmt.Fprintf(g.out, "%d man pages in %s\n", len(n), args[0])
			return nil
		},
	}
	comp := &cobra.Command{
		Use: "completions DIR", Short: "write bash, zsh and fish completions into DIR", Args: exactArgs(1, "a directory"),
		RunE: func(c *cobra.Command, args []string) error {
			r := root()
			for name, write := range map[string]func(string) error{
				"vigil.bash": func(f string) error { return r.GenBashCompletionFileV2(f, true) },
				"_vigil":     r.GenZshCompletionFile,
				"vigil.fish": func(f string) error { return r.GenFishCompletionFile(f, true) },
			} {
				if err := os.MkdirAll(args[0], 0o755); err != nil {
					return err
				}
				if err := write(filepath.Join(args[0], name)); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.out, "completions for bash, zsh and fish in %s\n", args[0])
			return nil
		},
	}
	c.AddCommand(man, comp)
	return c
}
