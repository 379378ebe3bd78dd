package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/versions"
	"github.com/spf13/cobra"
)

// ValidateOptions are `imager validate`'s inputs.
type ValidateOptions struct {
	*Globals
	Target string
}

func newValidateCmd(g *Globals) *cobra.Command {
	o := &ValidateOptions{Globals: g}
	return &cobra.Command{
		Use:   "validate app|neo4j|api|web|landing|sites|services|all",
		Short: "Validate the Packer templates with the installed Packer",
		Args:  targetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target = args[0]
			return RunValidate(cmd.Context(), o)
		},
	}
}

// validateToken stands in for the API token: validation talks to no API, but Packer's
// DigitalOcean builder refuses a configuration without one.
const validateToken = "imager-validate-placeholder"

// RunValidate runs `packer validate` on each image's staged template with the versions
// file and placeholder build variables.
func RunValidate(ctx context.Context, o *ValidateOptions) error {
	imgs, err := ParseTarget(o.Target)
	if err != nil {
		return err
	}
	repo, err := o.repo()
	if err != nil {
		return err
	}
	vers, err := versions.Load(filepath.Join(repo, versions.File))
	if err != nil {
		return err
	}
	// Every pin resolves: an empty or malformed one fails validate, not only build.
	arts, err := artifacts.Resolve(vers, artifacts.Catalog, "")
	if err != nil {
		return err
	}
	for _, a := range arts {
		if a.Source == artifacts.SourceGoModule {
			if err := artifacts.CheckModulePin(repo, a); err != nil {
				return err
			}
		}
	}
	env := []string{}
	if _, err := o.token(); err != nil {
		env = append(env, "DIGITALOCEAN_TOKEN="+validateToken)
	}
	r := o.packer(env...)
	v, err := r.Version(ctx)
	if err != nil {
		return err
	}
	if !v.NeedsPluginInit() {
		return fmt.Errorf("packer %s is too old: the templates need Packer 1.9 with the DigitalOcean plugin (make deps builds both)", v)
	}
	payload, err := os.MkdirTemp("", "imager-validate-payload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(payload)
	var failed []string
	for _, im := range imgs {
		dir, err := stageTemplate(repo, im.Template())
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := r.Init(ctx, dir, o.Stderr); err != nil {
			return fmt.Errorf("validate %s: %w", im.Family, err)
		}
		var extra map[string]string
		if im.IsService() {
			extra = map[string]string{"role": im.Role}
		}
		args := packerVars(repo, o.apiURL(), payload, "", extra)
		if err := r.Validate(ctx, dir, args, o.Stderr); err != nil {
			fmt.Fprintf(o.Stdout, "%s: INVALID (%v)\n", im.Family, err)
			failed = append(failed, im.Family)
			continue
		}
		fmt.Fprintf(o.Stdout, "%s: valid (packer %s)\n", im.Family, v)
	}
	if len(failed) > 0 {
		return fmt.Errorf("validate: %d of %d templates invalid: %v", len(failed), len(imgs), failed)
	}
	return nil
}
