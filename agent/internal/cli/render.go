package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/internal/exitcode"
)

// Source says where the droplet's metadata and user_data come from: files
// (tests, previews) or the metadata service.
type Source struct {
	MetadataURL  string
	MetadataFile string
	UserDataFile string
}

func (s *Source) flags(cmd *cobra.Command) {
	def := metadata.DefaultURL
	if v := os.Getenv(metadata.EnvURL); v != "" {
		def = v
	}
	cmd.Flags().StringVar(&s.MetadataURL, "metadata-url", def, "metadata service URL (env "+metadata.EnvURL+")")
	cmd.Flags().StringVar(&s.MetadataFile, "metadata-file", "", "read metadata from this JSON file instead of the service")
	cmd.Flags().StringVar(&s.UserDataFile, "user-data-file", "", "read user_data from this file instead of the metadata")
}

// Load reads metadata and parses user_data.
func (s *Source) Load(ctx context.Context) (metadata.Metadata, userdata.Config, error) {
	var (
		m   metadata.Metadata
		err error
	)
	if s.MetadataFile != "" {
		m, err = metadata.ReadFile(s.MetadataFile)
	} else {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		m, err = metadata.Client{URL: s.MetadataURL}.Fetch(ctx)
	}
	if err != nil {
		return m, userdata.Config{}, err
	}
	line := m.UserData
	if s.UserDataFile != "" {
		b, err := os.ReadFile(s.UserDataFile)
		if err != nil {
			return m, userdata.Config{}, fmt.Errorf("read user_data file: %w", err)
		}
		line = string(b)
	}
	u, err := userdata.Parse(line)
	if err != nil {
		return m, userdata.Config{}, err
	}
	return m, u, nil
}

// RenderOptions are `codelab-agent render`'s options.
type RenderOptions struct {
	Source
	ConsulBin string
	// EngineAPI is the Docker Engine API version the Compose files are
	// for; "" asks the local dockerd, as the boot does.
	EngineAPI string
}

func newRenderCmd(g *Global, stdio IO) *cobra.Command {
	o := &RenderOptions{}
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Render Consul, consul-template and Compose files from metadata and user_data",
		Long: `render runs exactly the agent's render path: read metadata and user_data,
render every file, validate them with the programs that read them (consul
validate, consul-template's parser, the Compose plugin's loader) and only
then swap them in atomically.
A file that fails validation changes nothing: the previous files stay.
Like the boot, it asks the local dockerd for its API version: healthchecks
get start_interval only on Docker Engine 25 and later (API 1.44).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunRender(cmd.Context(), g, o, stdio)
		},
	}
	o.Source.flags(cmd)
	cmd.Flags().StringVar(&o.ConsulBin, "consul", "", "consul binary used by validation (default: consul on PATH)")
	cmd.Flags().StringVar(&o.EngineAPI, "engine-api", "", "Docker Engine API version to render for, e.g. 1.44 (default: ask the local dockerd)")
	return cmd
}

// engineAPI is o.EngineAPI, else the local dockerd's API version, else ""
// (unknown: the Compose files hold only what every Engine accepts).
func (o *RenderOptions) engineAPI(ctx context.Context, log *slog.Logger) string {
	if o.EngineAPI != "" {
		return o.EngineAPI
	}
	c, err := containers.NewClient()
	if err == nil {
		defer c.Close()
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		var p types.Ping
		if p, err = c.Ping(ctx); err == nil {
			return p.APIVersion
		}
	}
	log.Warn("docker engine API version unknown; healthchecks without start_interval", slog.String("err", err.Error()))
	return ""
}

// RunRender is the render command.
func RunRender(ctx context.Context, g *Global, o *RenderOptions, stdio IO) error {
	log := g.Logger(stdio.ErrOut)
	start := time.Now()
	m, u, err := o.Source.Load(ctx)
	if err != nil {
		return err
	}
	files, err := render.Render(render.Input{Meta: m, User: u, EngineAPIVersion: o.engineAPI(ctx, log)})
	if err != nil {
		return err
	}
	validators := []render.Validator{render.TemplateValidator{}, render.ComposeValidator{}}
	cv, err := render.NewConsulValidator(o.ConsulBin)
	switch {
	case errors.Is(err, render.ErrNoConsul):
		log.Warn("consul validate skipped: no consul binary installed; the Consul config is checked only when Consul starts")
	case err != nil:
		return exitcode.UsageError("%w", err)
	default:
		validators = append(validators, cv)
	}
	changed, err := render.Apply(ctx, fsutil.Root{Dir: g.Root}, files, validators...)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	log.Info("rendered", slog.String("role", u.Role), slog.String("droplet", m.DropletID),
		slog.Int("files", len(files)), slog.Int("changed", len(changed)), slog.Duration("took", time.Since(start)))
	for _, f := range files {
		mark := "unchanged"
		for _, c := range changed {
			if c == f.Path {
				mark = "changed"
			}
		}
		fmt.Fprintf(stdio.Out, "%-9s %04o %s\n", mark, f.Mode.Perm(), f.Path)
	}
	return nil
}
