package cli

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/internal/exitcode"
)

// FmtOptions are `imager fmt`'s inputs.
type FmtOptions struct {
	*Globals
	Check bool
}

func newFmtCmd(g *Globals) *cobra.Command {
	o := &FmtOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "fmt [--check]",
		Short: "Format the Packer HCL files (with --check: list the files that need it and fail)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunFmt(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.Check, "check", false, "only check; exit non-zero and list the files that need formatting")
	return cmd
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return exitcode.UsageError("%s takes no arguments", cmd.CommandPath())
	}
	return nil
}

// hclDirs returns every folder under root holding *.pkr.hcl or *.pkrvars.hcl files
// (Packer 1.6's fmt has no -recursive).
func hclDirs(root string) ([]string, error) {
	seen := map[string]bool{}
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasSuffix(p, ".pkr.hcl") || strings.HasSuffix(p, ".pkrvars.hcl") {
			if dir := filepath.Dir(p); !seen[dir] {
				seen[dir] = true
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	return dirs, err
}

// FmtError lists the files `fmt --check` found unformatted.
type FmtError struct{ Files []string }

func (e *FmtError) Error() string {
	return fmt.Sprintf("%d file(s) need formatting: %s (run imager fmt)", len(e.Files), strings.Join(e.Files, ", "))
}

// RunFmt runs `packer fmt [-check]` on every folder under packer/ with HCL files.
func RunFmt(ctx context.Context, o *FmtOptions) error {
	repo, err := o.repo()
	if err != nil {
		return err
	}
	dirs, err := hclDirs(filepath.Join(repo, packerDir))
	if err != nil {
		return fmt.Errorf("find Packer files: %w", err)
	}
	if len(dirs) == 0 {
		return fmt.Errorf("no Packer files under %s", filepath.Join(repo, packerDir))
	}
	r := o.packer()
	var files []string
	for _, d := range dirs {
		got, err := r.Fmt(ctx, d, o.Check)
		if err != nil {
			return err
		}
		for _, f := range got {
			if !filepath.IsAbs(f) {
				f = filepath.Join(d, filepath.Base(f))
			}
			if rel, err := filepath.Rel(repo, f); err == nil {
				f = rel
			}
			files = append(files, f)
		}
	}
	if o.Check {
		if len(files) > 0 {
			fmt.Fprintln(o.Stdout, "needs formatting:")
			for _, f := range files {
				fmt.Fprintln(o.Stdout, "  "+f)
			}
			return &FmtError{Files: files}
		}
		fmt.Fprintf(o.Stdout, "formatted: %d folder(s) checked\n", len(dirs))
		return nil
	}
	for _, f := range files {
		fmt.Fprintln(o.Stdout, "formatted "+f)
	}
	if len(files) == 0 {
		fmt.Fprintln(o.Stdout, "nothing to format")
	}
	return nil
}
