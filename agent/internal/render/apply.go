package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// Validator checks staged files with the program that will read them.
// staged is a folder that holds every rendered file at its droplet path
// (staged + "/etc/consul.d/consul.hcl"), next to the files already on the
// droplet that the same program also reads.
type Validator interface {
	Name() string
	Validate(ctx context.Context, staged string, files []File) error
}

// ValidationError says which consumer rejected which files, and why.
type ValidationError struct {
	Validator string
	Files     []string
	Err       error
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s rejected the rendered config (%s); nothing was changed: %v",
		e.Validator, strings.Join(e.Files, ", "), e.Err)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// Apply stages files, runs every validator on the staged copy and only then
// writes each file through root's atomic writer, owned by its consumer's
// user (Consumer.Owner; root.Owners resolves it). If any validator fails,
// or an owner cannot be resolved, nothing under root changes. It returns
// the droplet paths whose bytes, mode or owner changed, so callers restart
// only what really changed.
func Apply(ctx context.Context, root fsutil.Root, files []File, validators ...Validator) (changed []string, err error) {
	return ApplyHook(ctx, root, files, nil, validators...)
}

// ApplyHook is Apply with a hook: once every validator has accepted the
// files, and before the first one is written, before (if set) is called
// with the droplet paths whose bytes or mode are about to change. If it
// fails, nothing is written. The boot uses it to record which units must
// restart before their config changes, so a crash in between cannot leave
// a unit running on stale config.
func ApplyHook(ctx context.Context, root fsutil.Root, files []File, before func(changing []string) error, validators ...Validator) (changed []string, err error) {
	staged, err := os.MkdirTemp("", "codelab-render-*")
	if err != nil {
		return nil, fmt.Errorf("create staging folder: %w", err)
	}
	defer os.RemoveAll(staged)

	rendered := map[string]bool{}
	for _, f := range files {
		rendered[f.Path] = true
		if _, err := fsutil.WriteFile(filepath.Join(staged, f.Path), f.Data, f.Mode); err != nil {
			return nil, fmt.Errorf("stage %s: %w", f.Path, err)
		}
	}
	// Consul reads every file in its folder: validate ours together with
	// whatever else is there, as Consul will load them.
	if err := copyForeign(root, staged, ConsulDir, rendered); err != nil {
		return nil, err
	}
	for _, v := range validators {
		if err := v.Validate(ctx, staged, files); err != nil {
			var names []string
			for _, f := range files {
				if v.Name() == string(f.Consumer) {
					names = append(names, f.Path)
				}
			}
			return nil, &ValidationError{Validator: v.Name(), Files: names, Err: errors.New(strings.ReplaceAll(err.Error(), staged, ""))}
		}
	}
	// Every owner is known before the first write.
	owners := make([]*fsutil.Owner, len(files))
	for i, f := range files {
		if owners[i], err = root.Owner(f.Consumer.Owner()); err != nil {
			return nil, fmt.Errorf("owner of %s: %w", f.Path, err)
		}
	}
	if before != nil {
		var changing []string
		for i, f := range files {
			if fsutil.Differs(root.Path(f.Path), f.Data, f.Mode, owners[i]) {
				changing = append(changing, f.Path)
			}
		}
		if len(changing) > 0 {
			if err := before(changing); err != nil {
				return nil, err
			}
		}
	}
	for i, f := range files {
		ok, err := fsutil.WriteFileOwned(root.Path(f.Path), f.Data, f.Mode, owners[i])
		if err != nil {
			return changed, fmt.Errorf("write %s: %w", f.Path, err)
		}
		if ok {
			changed = append(changed, f.Path)
		}
	}
	return changed, nil
}

func copyForeign(root fsutil.Root, staged, dir string, rendered map[string]bool) error {
	entries, err := os.ReadDir(root.Path(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		ext := path.Ext(e.Name())
		if e.IsDir() || rendered[p] || fsutil.IsTemp(e.Name()) || (ext != ".hcl" && ext != ".json") {
			continue
		}
		b, err := root.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if _, err := fsutil.WriteFile(filepath.Join(staged, p), b, 0o600); err != nil {
			return fmt.Errorf("stage %s: %w", p, err)
		}
	}
	return nil
}
