package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	composeloader "github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	ctconfig "github.com/hashicorp/consul-template/config"
	cttemplate "github.com/hashicorp/consul-template/template"
)

// ConsulValidator runs the real `consul validate` on the staged config
// folder.
type ConsulValidator struct {
	Bin string // path to consul; empty means "consul" on PATH
}

// ErrNoConsul is returned by NewConsulValidator when no consul binary can be
// found, so callers can decide whether that is fatal.
var ErrNoConsul = errors.New("no consul binary found on PATH")

// NewConsulValidator finds the consul binary (bin, or PATH when empty).
func NewConsulValidator(bin string) (ConsulValidator, error) {
	if bin == "" {
		bin = "consul"
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		if bin == "consul" {
			return ConsulValidator{}, ErrNoConsul
		}
		return ConsulValidator{}, fmt.Errorf("consul binary %s: %w", bin, err)
	}
	return ConsulValidator{Bin: p}, nil
}

func (ConsulValidator) Name() string { return string(ConsumerConsul) }

func (v ConsulValidator) Validate(ctx context.Context, staged string, _ []File) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dir := filepath.Join(staged, ConsulDir)
	cmd := exec.CommandContext(ctx, v.Bin, "validate", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("consul validate: %s", msg)
	}
	return nil
}

// TemplateValidator parses the consul-template config and every template
// with consul-template's own library, and dry-runs each template against an
// empty store so unknown functions and bad syntax are caught before the
// service sees them.
type TemplateValidator struct{}

func (TemplateValidator) Name() string { return string(ConsumerConsulTemplate) }

func (TemplateValidator) Validate(_ context.Context, staged string, files []File) error {
	byPath := map[string]File{}
	var cfgFile *File
	for i, f := range files {
		if f.Consumer != ConsumerConsulTemplate {
			continue
		}
		byPath[f.Path] = f
		if f.Path == TemplateConfig {
			cfgFile = &files[i]
		}
	}
	for _, f := range byPath {
		if filepath.Ext(f.Path) != ".ctmpl" {
			continue
		}
		if err := parseTemplate(f.Path, string(f.Data)); err != nil {
			return err
		}
	}
	if cfgFile == nil {
		return nil
	}
	cfg, err := ctconfig.Parse(string(cfgFile.Data))
	if err != nil {
		return fmt.Errorf("%s: %w", cfgFile.Path, err)
	}
	cfg.Finalize()
	if cfg.Templates == nil || len(*cfg.Templates) == 0 {
		return fmt.Errorf("%s: no template stanzas", cfgFile.Path)
	}
	for _, t := range *cfg.Templates {
		src := ""
		if t.Source != nil {
			src = *t.Source
		}
		if src == "" {
			return fmt.Errorf("%s: a template stanza has no source", cfgFile.Path)
		}
		if t.Destination == nil || *t.Destination == "" {
			return fmt.Errorf("%s: template %s has no destination", cfgFile.Path, src)
		}
		if !renderedSource(byPath, src) {
			if _, err := os.Stat(filepath.Join(staged, src)); err != nil {
				return fmt.Errorf("%s: template source %s is neither rendered nor on the droplet", cfgFile.Path, src)
			}
		}
	}
	return nil
}

// renderedSource matches a stanza's source against the rendered set; the
// source carries the content root as a prefix in tests.
func renderedSource(byPath map[string]File, src string) bool {
	for p := range byPath {
		if src == p || strings.HasSuffix(src, p) {
			return true
		}
	}
	return false
}

func parseTemplate(name, contents string) error {
	t, err := cttemplate.NewTemplate(&cttemplate.NewTemplateInput{Contents: contents})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := t.Execute(&cttemplate.ExecuteInput{Brain: cttemplate.NewBrain()}); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ComposeValidator loads each rendered Compose file with the loader the
// Compose plugin itself uses (compose-go): YAML, the Compose schema,
// interpolation, and consistency (every volume, network and secret a
// service names is defined). env_file entries are not read: consul-template
// writes those files after render, from Consul KV.
type ComposeValidator struct{}

func (ComposeValidator) Name() string { return string(ConsumerCompose) }

func (ComposeValidator) Validate(ctx context.Context, staged string, files []File) error {
	for _, f := range files {
		if f.Consumer != ConsumerCompose {
			continue
		}
		if err := loadCompose(ctx, filepath.Join(staged, f.Path), f.Data); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return nil
}

// loadCompose loads the Compose file at file (whose bytes are data) as
// `docker compose -p <folder name>` would, without reading env files.
func loadCompose(ctx context.Context, file string, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty compose file")
	}
	dir := filepath.Dir(file)
	_, err := composeloader.LoadWithContext(ctx, composetypes.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []composetypes.ConfigFile{{Filename: file, Content: data}},
		Environment: map[string]string{},
	}, func(o *composeloader.Options) {
		o.SetProjectName(filepath.Base(dir), true)
		o.SkipResolveEnvironment = true
	})
	return err
}
