package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/internal/packer"
)

// Template locations relative to the repository root.
const (
	packerDir  = "packer"
	commonDir  = "packer/common"
	pluginsDir = "packer/plugins"
	scriptsDir = "packer/scripts"
)

// stageTemplate copies the image's templates and the shared ones into a fresh folder
// (plus the plugin declaration for Packer 1.7+) and returns it. Packer validates and
// builds a folder, and Packer 1.6 rejects required_plugins, hence staging.
func stageTemplate(repo, family string, v packer.Version) (string, error) {
	dir, err := os.MkdirTemp("", "imager-"+family+"-")
	if err != nil {
		return "", fmt.Errorf("stage %s template: %w", family, err)
	}
	srcs := []string{commonDir, filepath.Join(packerDir, family)}
	if v.NeedsPluginInit() {
		srcs = append(srcs, pluginsDir)
	}
	n := 0
	for _, src := range srcs {
		files, err := filepath.Glob(filepath.Join(repo, src, "*.pkr.hcl"))
		if err != nil {
			return "", err
		}
		for _, f := range files {
			if err := copyFile(f, filepath.Join(dir, filepath.Base(f)), 0o644); err != nil {
				return "", fmt.Errorf("stage %s template: %w", family, err)
			}
			if strings.HasPrefix(src, filepath.Join(packerDir, family)) {
				n++
			}
		}
	}
	if n == 0 {
		return "", fmt.Errorf("stage %s template: no *.pkr.hcl in %s", family, filepath.Join(repo, packerDir, family))
	}
	return dir, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// packerVars are the -var-file/-var arguments every validate and build passes.
func packerVars(repo, apiURL, payloadDir string, extra map[string]string) []string {
	args := []string{
		"-var-file=" + filepath.Join(repo, artifacts.VersionsFile),
		"-var", "api_url=" + apiURL,
		"-var", "payload_dir=" + payloadDir,
		"-var", "scripts_dir=" + filepath.Join(repo, scriptsDir),
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		args = append(args, "-var", k+"="+extra[k])
	}
	return args
}

// initPlugins runs `packer init` for Packer 1.7+.
func initPlugins(ctx context.Context, r *packer.Runner, v packer.Version, dir string, out io.Writer) error {
	if !v.NeedsPluginInit() {
		return nil
	}
	return r.Init(ctx, dir, out)
}
