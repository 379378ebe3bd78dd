package cli

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/codelab-app/infra/imager/internal/fileutil"
	"github.com/codelab-app/infra/imager/versions"
)

// Template locations relative to the repository root.
const (
	packerDir  = "packer"
	commonDir  = "packer/common"
	pluginsDir = "packer/plugins"
	scriptsDir = "packer/scripts"
)

// stageTemplate copies the image's templates, the shared ones and the plugin declaration
// into a fresh folder and returns it: Packer validates and builds a folder.
func stageTemplate(repo, family string) (string, error) {
	dir, err := os.MkdirTemp("", "imager-"+family+"-")
	if err != nil {
		return "", fmt.Errorf("stage %s template: %w", family, err)
	}
	own := filepath.Join(packerDir, family)
	n := 0
	for _, src := range []string{commonDir, pluginsDir, own} {
		files, err := filepath.Glob(filepath.Join(repo, src, "*.pkr.hcl"))
		if err != nil {
			return "", err
		}
		for _, f := range files {
			if err := fileutil.CopyFile(f, filepath.Join(dir, filepath.Base(f)), 0o644); err != nil {
				return "", fmt.Errorf("stage %s template: %w", family, err)
			}
			if src == own {
				n++
			}
		}
	}
	if n == 0 {
		return "", fmt.Errorf("stage %s template: no *.pkr.hcl in %s", family, filepath.Join(repo, own))
	}
	return dir, nil
}

// packerVars are the -var-file/-var arguments every validate and build passes: the
// versions file, then the local override (which wins), then the build variables.
func packerVars(repo, apiURL, payloadDir, override string, extra map[string]string) []string {
	args := []string{"-var-file=" + filepath.Join(repo, versions.File)}
	if override != "" {
		args = append(args, "-var-file="+override)
	}
	args = append(args,
		"-var", "api_url="+apiURL,
		"-var", "payload_dir="+payloadDir,
		"-var", "scripts_dir="+filepath.Join(repo, scriptsDir),
	)
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		args = append(args, "-var", k+"="+extra[k])
	}
	return args
}
