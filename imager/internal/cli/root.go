// Package cli holds the imager's commands. Each command is an options struct plus a run
// function with injected stdout/stderr, so tests call it directly; cmd/imager only wires.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/codelab-app/infra/imager/internal/packer"
	"github.com/codelab-app/infra/imager/internal/version"
	"github.com/codelab-app/infra/internal/cliconv"
	"github.com/codelab-app/infra/internal/exitcode"
)

// Globals are the top-level flags and the injected world every command uses.
type Globals struct {
	APIURL   string
	Packer   string
	CacheDir string
	Repo     string
	Verbose  bool

	// Level is the logger's level: --log-level, or debug with --verbose.
	Level *slog.LevelVar

	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Log            *slog.Logger
	HTTPClient     *http.Client // DigitalOcean API
	DownloadClient *http.Client // artifact downloads
	// NewAPI builds the DigitalOcean client; tests may replace it.
	NewAPI func(token, apiURL string) (images.API, error)
}

func (g *Globals) getenv(k string) string {
	if g.Getenv == nil {
		return os.Getenv(k)
	}
	return g.Getenv(k)
}

func (g *Globals) logger() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}

// apiURL is --api-url, else DIGITALOCEAN_API_URL, else production.
func (g *Globals) apiURL() string {
	if g.APIURL != "" {
		return g.APIURL
	}
	if u := g.getenv("DIGITALOCEAN_API_URL"); u != "" {
		return u
	}
	return images.DefaultAPIURL
}

// ErrNoToken is returned when neither token variable is set.
var ErrNoToken = errors.New("no DigitalOcean API token: set DIGITALOCEAN_API_TOKEN (or DIGITALOCEAN_TOKEN)")

func (g *Globals) token() (string, error) {
	for _, k := range []string{"DIGITALOCEAN_API_TOKEN", "DIGITALOCEAN_TOKEN"} {
		if t := strings.TrimSpace(g.getenv(k)); t != "" {
			return t, nil
		}
	}
	return "", ErrNoToken
}

// api returns a DigitalOcean client whose token the API accepted.
func (g *Globals) api(ctx context.Context) (images.API, string, error) {
	tok, err := g.token()
	if err != nil {
		return nil, "", err
	}
	newAPI := g.NewAPI
	if newAPI == nil {
		newAPI = func(token, apiURL string) (images.API, error) {
			return images.NewGodo(token, apiURL, g.HTTPClient)
		}
	}
	api, err := newAPI(tok, g.apiURL())
	if err != nil {
		return nil, "", err
	}
	if err := api.CheckToken(ctx); err != nil {
		return nil, "", err
	}
	return api, tok, nil
}

func (g *Globals) packer(env ...string) *packer.Runner {
	return &packer.Runner{Bin: g.Packer, Env: env, Log: g.logger()}
}

// repo returns --repo, or the folder holding go.work found walking up from the working
// directory.
func (g *Globals) repo() (string, error) {
	if g.Repo != "" {
		return filepath.Abs(g.Repo)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s: run inside the repository or pass --repo", dir)
		}
	}
}

func (g *Globals) cacheDir() (string, error) {
	if g.CacheDir != "" {
		return g.CacheDir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the cache folder (pass --cache-dir): %w", err)
	}
	return filepath.Join(home, ".cache", "codelab", "artifacts"), nil
}

// Image is one image family the imager builds.
type Image struct {
	Target string // the CLI name: app, neo4j, api, web, landing, sites
	Family string // the snapshot family: services-base, neo4j-base, api-base, ...
	// Role is set for a service image: the role whose images are baked in, on top of
	// the services base (template folder packer/services, parameterised by role).
	Role string
}

// Template is the folder under packer/ holding the image's own templates.
func (im Image) Template() string {
	if im.Role != "" {
		return ServicesTemplate
	}
	return im.Family
}

// IsService says whether the image is a service image (built on the services base).
func (im Image) IsService() bool { return im.Role != "" }

// ServicesTemplate is the one template folder of the four service images.
const ServicesTemplate = "services"

// ServicesBase is the image every service image is built on.
var ServicesBase = Image{Target: "app", Family: "services-base"}

// Bases are the images built from debian-12-x64; Services those built on ServicesBase.
var (
	Bases    = []Image{ServicesBase, {Target: "neo4j", Family: "neo4j-base"}}
	Services = []Image{
		{Target: "api", Family: "api-base", Role: "api"},
		{Target: "web", Family: "web-base", Role: "web"},
		{Target: "landing", Family: "landing-base", Role: "landing"},
		{Target: "sites", Family: "sites-base", Role: "sites"},
	}
	// Images are all six, in build order.
	Images = append(append([]Image(nil), Bases...), Services...)
)

// Targets is the usage string of the build targets.
const Targets = "app, neo4j, api, web, landing, sites, services or all"

// ParseTarget maps app|neo4j|api|web|landing|sites|services|all (or a family name) to
// images: services is the four service images, all is all six.
func ParseTarget(s string) ([]Image, error) {
	switch s {
	case "all":
		return Images, nil
	case "services":
		return Services, nil
	}
	for _, im := range Images {
		if s == im.Target || s == im.Family {
			return []Image{im}, nil
		}
	}
	return nil, exitcode.UsageError("unknown image %q: want %s", s, Targets)
}

func targetArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return exitcode.UsageError("%s needs one of %s", cmd.CommandPath(), Targets)
	}
	_, err := ParseTarget(args[0])
	return err
}

// NewRootCmd returns the imager command tree.
func NewRootCmd(g *Globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "imager",
		Short: "Build and manage the codelab DigitalOcean images (Packer snapshots)",
		Long: `imager builds the codelab base images with Packer and manages their snapshots.

  imager build app|neo4j|api|web|landing|sites|services|all [--version v1] [--registry R]
               [--plan] [--json] [--force] [--regions nyc3,fra1] [--debug]
  imager validate app|neo4j|api|web|landing|sites|services|all
  imager fmt [--check]
  imager list-images [--json]
  imager clean-images [--keep 3] [--dry-run]

The DigitalOcean token comes from DIGITALOCEAN_API_TOKEN (or DIGITALOCEAN_TOKEN), the
API URL from --api-url or DIGITALOCEAN_API_URL (default ` + images.DefaultAPIURL + `).
The service images pull the roles' images with CODELAB_REGISTRY_TOKEN (anonymous when unset).

` + exitcode.Doc,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if g.Level == nil {
		g.Level = new(slog.LevelVar)
	}
	root.SetVersionTemplate("imager {{.Version}}\n")
	// Declared here (cobra would add it only at Execute) so the flag is part of the
	// command tree the tests parse.
	root.Flags().Bool("version", false, "print the imager's version and commit")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if g.Verbose {
			g.Level.Set(slog.LevelDebug)
		}
	}
	root.SetIn(g.Stdin)
	root.SetOut(g.Stdout)
	root.SetErr(g.Stderr)
	pf := root.PersistentFlags()
	// Defaults are the values already in g, so callers (tests) can preset them.
	if g.Packer == "" {
		g.Packer = "packer"
	}
	pf.StringVar(&g.APIURL, "api-url", g.APIURL, "DigitalOcean API URL (default $DIGITALOCEAN_API_URL or "+images.DefaultAPIURL+")")
	pf.StringVar(&g.Packer, "packer", g.Packer, "Packer binary")
	pf.StringVar(&g.CacheDir, "cache-dir", g.CacheDir, "artifact download cache (default ~/.cache/codelab/artifacts)")
	pf.StringVar(&g.Repo, "repo", g.Repo, "repository root (default: the folder holding go.work above the working directory)")
	pf.Var(cliconv.LogLevel(g.Level), "log-level", "log level: "+cliconv.LogLevels)
	pf.BoolVarP(&g.Verbose, "verbose", "v", g.Verbose, "debug logging to stderr (--log-level debug)")
	root.AddCommand(newBuildCmd(g), newValidateCmd(g), newFmtCmd(g), newListCmd(g), newCleanCmd(g))
	cliconv.Strict(root)
	return root
}

// Execute runs the command line args and returns the process exit code
// from the one table in package exitcode; errors go to g.Stderr.
func Execute(ctx context.Context, g *Globals, args []string) int {
	root := NewRootCmd(g)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	return cliconv.Report(g.Stderr, "imager", cmd, err)
}
