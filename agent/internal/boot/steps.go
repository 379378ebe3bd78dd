package boot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/agent/internal/units"
	"github.com/codelab-app/infra/agent/internal/userdata"
)

// Step names, as the state file and status show them.
const (
	StepFetchMetadata = "fetch-metadata"
	StepParseUserdata = "parse-userdata"
	StepRender        = "render"
	StepRegistryLogin = "registry-login"
	StepDocker        = "docker"
	StepUnits         = "units"
	StepConsulReady   = "consul-ready"
	StepPullImages    = "pull-images"
	StepComposeUp     = "compose-up"
)

// Facts is what earlier steps learn and later steps read. Each field is
// written by one step only, before the steps that need it start (the
// runner's ordering is the synchronisation).
type Facts struct {
	Meta    metadata.Metadata
	User    userdata.Config
	Files   []render.File // rendered in memory by parse-userdata
	Changed []string      // droplet paths whose bytes changed, from render
}

// File returns the rendered file at a droplet path.
func (f *Facts) File(p string) (render.File, bool) {
	for _, x := range f.Files {
		if x.Path == p {
			return x, true
		}
	}
	return render.File{}, false
}

// ChangedUnder reports whether render changed anything below dir.
func (f *Facts) ChangedUnder(dir string) bool {
	for _, c := range f.Changed {
		if strings.HasPrefix(c, dir+"/") {
			return true
		}
	}
	return false
}

// FetchMetadata reads the droplet's metadata.
type FetchMetadata struct {
	Facts *Facts
	Fetch func(ctx context.Context) (metadata.Metadata, error)
	Rec   *Recorder
}

func (s *FetchMetadata) Name() string { return StepFetchMetadata }
func (s *FetchMetadata) Run(ctx context.Context) error {
	m, err := s.Fetch(ctx)
	if err != nil {
		return WithHint(err, "curl -s http://169.254.169.254/metadata/v1.json")
	}
	s.Facts.Meta = m
	if s.Rec != nil {
		_ = s.Rec.Update(func(st *State) { st.DropletID = m.DropletID })
	}
	return nil
}

// ParseUserdata parses the one-line user_data and renders the role's files
// in memory (render is pure), so image pulls can start from the Compose
// file without waiting for anything else.
type ParseUserdata struct {
	Facts *Facts
	// Line overrides the metadata's user_data (--user-data-file).
	Line func() (string, error)
	Rec  *Recorder
}

func (s *ParseUserdata) Name() string { return StepParseUserdata }
func (s *ParseUserdata) Run(context.Context) error {
	line := s.Facts.Meta.UserData
	if s.Line != nil {
		l, err := s.Line()
		if err != nil {
			return err
		}
		line = l
	}
	u, err := userdata.Parse(line)
	if err != nil {
		return WithHint(fmt.Errorf("parse user_data: %w", err), "curl -s http://169.254.169.254/metadata/v1/user-data | codelab-agent userdata --check")
	}
	s.Facts.User = u
	if s.Rec != nil {
		_ = s.Rec.Update(func(st *State) { st.Role = u.Role })
	}
	files, err := render.Render(render.Input{Meta: s.Facts.Meta, User: u})
	if err != nil {
		return err
	}
	s.Facts.Files = files
	return nil
}

// Render validates the rendered files with their consumers and swaps them
// in; the changed paths decide which units restart.
type Render struct {
	Facts      *Facts
	Root       fsutil.Root
	Validators []render.Validator
	Log        *slog.Logger
}

func (s *Render) Name() string { return StepRender }
func (s *Render) Run(ctx context.Context) error {
	changed, err := render.Apply(ctx, s.Root, s.Facts.Files, s.Validators...)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	s.Facts.Changed = changed
	if s.Log != nil {
		s.Log.Info("rendered", slog.Int("files", len(s.Facts.Files)), slog.Any("changed", changed))
	}
	return nil
}

// RegistryTokenFile is where an operator (or the imager, for a private
// build) can put a registry token instead of registry_token= in user_data.
const RegistryTokenFile = "/etc/codelab/registry-token"

// DockerConfigFile holds registry credentials for the docker CLI and
// Compose.
const DockerConfigFile = "/root/.docker/config.json"

// Credentials returns the registry credentials: user_data's
// registry_token, else the token file, else none (anonymous pulls).
func Credentials(f *Facts, root fsutil.Root, tokenFile string) (containers.Credentials, error) {
	c := containers.Credentials{Host: containers.RegistryHost(f.User.Registry + "/x")}
	if t := f.User.RegistryToken.Reveal(); t != "" {
		c.Token = t
		return c, nil
	}
	if tokenFile == "" {
		return c, nil
	}
	b, err := root.ReadFile(tokenFile)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read registry token: %w", err)
	}
	c.Token = strings.TrimSpace(string(b))
	return c, nil
}

// RegistryLogin writes /root/.docker/config.json (0600) with the registry
// credentials, so that `docker compose` and an operator's `docker pull` can
// use them. It is once-per-instance: the credentials come from user_data,
// which DigitalOcean fixes when the droplet is created, so a reboot has
// nothing new to write (and a new droplet from a snapshot writes its own).
type RegistryLogin struct {
	Facts     *Facts
	Root      fsutil.Root
	TokenFile string
	Log       *slog.Logger
}

func (s *RegistryLogin) Name() string { return StepRegistryLogin }
func (s *RegistryLogin) Run(context.Context) error {
	c, err := Credentials(s.Facts, s.Root, s.TokenFile)
	if err != nil {
		return err
	}
	if c.Token == "" {
		if s.Log != nil {
			s.Log.Info("no registry token: pulls are anonymous", slog.String("registry", c.Host))
		}
		return nil
	}
	b, err := c.DockerConfig()
	if err != nil {
		return err
	}
	if _, err := s.Root.WriteFile(DockerConfigFile, b, 0o600); err != nil {
		return fmt.Errorf("write registry credentials: %w", err)
	}
	return nil
}

// Units is the part of *units.Manager the unit steps use.
type Units interface {
	Converge(ctx context.Context, wants []units.Want, timeout time.Duration) ([]units.Outcome, error)
}

// Unit names.
const (
	DockerUnit         = "docker.service"
	ConsulUnit         = "consul.service"
	ConsulTemplateUnit = "consul-template.service"
)

// DockerStep makes sure dockerd is enabled and active. It needs nothing
// else, so pulls can start as soon as user_data is parsed.
type DockerStep struct {
	Units   Units
	Timeout time.Duration
	Rec     *Recorder
}

func (s *DockerStep) Name() string { return StepDocker }
func (s *DockerStep) Run(ctx context.Context) error {
	out, err := s.Units.Converge(ctx, []units.Want{{Name: DockerUnit}}, s.Timeout)
	detail(s.Rec, StepDocker, out)
	return unitErr(err)
}

// UnitsStep enables and starts consul and consul-template, restarting each
// only when render changed its config.
type UnitsStep struct {
	Facts   *Facts
	Units   Units
	Timeout time.Duration
	Rec     *Recorder
}

func (s *UnitsStep) Name() string { return StepUnits }
func (s *UnitsStep) Run(ctx context.Context) error {
	wants := []units.Want{
		{Name: ConsulUnit, Restart: s.Facts.ChangedUnder(render.ConsulDir)},
		{Name: ConsulTemplateUnit, Restart: s.Facts.ChangedUnder(render.TemplateDir)},
	}
	out, err := s.Units.Converge(ctx, wants, s.Timeout)
	detail(s.Rec, StepUnits, out)
	return unitErr(err)
}

func detail(rec *Recorder, step string, out []units.Outcome) {
	if rec == nil || len(out) == 0 {
		return
	}
	var parts []string
	for _, o := range out {
		parts = append(parts, strings.TrimSuffix(o.Unit, ".service")+" "+string(o.Action))
	}
	rec.SetDetail(step, strings.Join(parts, ", "))
}

func unitErr(err error) error {
	var ue *units.UnitError
	if errors.As(err, &ue) {
		return WithHint(err, ue.Hint())
	}
	return err
}

// ConsulReady waits until the local agent answers and a leader exists.
type ConsulReady struct {
	Facts   *Facts
	Consul  consul.Client
	Timeout time.Duration
	Poll    retry.Policy
}

func (s *ConsulReady) Name() string { return StepConsulReady }
func (s *ConsulReady) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	pol := s.Poll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 250*time.Millisecond, 2*time.Second
	}
	var missing string
	err := retry.Do(ctx, pol, func(ctx context.Context) error {
		h := s.Consul.Check(ctx)
		missing = h.Missing(s.Facts.User.Join.String())
		if missing != "" {
			return errors.New(missing)
		}
		return nil
	})
	if err != nil {
		return WithHint(fmt.Errorf("consul not ready after %s: %s", s.Timeout, missing), "journalctl -u consul -n 50")
	}
	return nil
}

// PullImages pulls every image of the role's Compose file concurrently.
type PullImages struct {
	Facts     *Facts
	Puller    *containers.Puller
	Root      fsutil.Root
	TokenFile string
	Rec       *Recorder
}

func (s *PullImages) Name() string { return StepPullImages }
func (s *PullImages) Run(ctx context.Context) error {
	f, ok := s.Facts.File(render.ComposeFile(s.Facts.User.Role))
	if !ok {
		return fmt.Errorf("no compose file rendered for role %s", s.Facts.User.Role)
	}
	refs, err := containers.ComposeImages(f.Data)
	if err != nil {
		return err
	}
	creds, err := Credentials(s.Facts, s.Root, s.TokenFile)
	if err != nil {
		return err
	}
	p := *s.Puller
	p.Creds = creds
	done := 0
	if s.Rec != nil {
		_ = s.Rec.Update(func(st *State) {
			st.Images = nil
			for _, r := range refs {
				st.Images = append(st.Images, ImageState{Ref: r, Result: containers.PullPulling})
			}
		})
		s.Rec.SetStatus(fmt.Sprintf("pulling images 0/%d", len(refs)))
	}
	p.OnProgress = func(pr containers.Progress) {
		if s.Rec == nil {
			return
		}
		final := pr.Result != containers.PullPulling
		if final {
			done++
			s.Rec.SetStatus(fmt.Sprintf("pulling images %d/%d", done, len(refs)))
		}
		upd := func(st *State) {
			for i := range st.Images {
				if st.Images[i].Ref == pr.Ref {
					st.Images[i] = imageState(pr)
				}
			}
		}
		if final {
			_ = s.Rec.Update(upd)
		} else {
			s.Rec.Progress(upd)
		}
	}
	out, err := p.PullAll(ctx, refs)
	var pulled, present int
	for _, pr := range out {
		switch pr.Result {
		case containers.PullPulled:
			pulled++
		case containers.PullPresent:
			present++
		}
	}
	if s.Rec != nil {
		s.Rec.SetDetail(StepPullImages, fmt.Sprintf("%d images: %d pulled, %d already present", len(refs), pulled, present))
	}
	var pe *containers.PullError
	if errors.As(err, &pe) {
		return WithHint(err, pe.Hint())
	}
	return err
}

func imageState(pr containers.Progress) ImageState {
	is := ImageState{Ref: pr.Ref, Result: pr.Result, Digest: pr.Digest, Current: pr.Current, Total: pr.Total, DurationMS: pr.Took.Milliseconds()}
	if pr.Err != nil {
		is.Error = pr.Err.Error()
	}
	return is
}

// ComposeUp waits for consul-template to render the role's env files, then
// runs `docker compose up -d --wait --pull never`. On failure it records
// which service is unhealthy and its last log lines.
type ComposeUp struct {
	Facts      *Facts
	Root       fsutil.Root
	API        containers.API
	Docker     string // docker CLI; default "docker"
	EnvTimeout time.Duration
	Timeout    time.Duration
	Rec        *Recorder
	Poll       retry.Policy
}

func (s *ComposeUp) Name() string { return StepComposeUp }

// EnvFiles are the files consul-template renders for the role.
func EnvFiles(files []render.File, role string) []string {
	var out []string
	for _, f := range files {
		if f.Consumer == render.ConsumerConsulTemplate && strings.HasSuffix(f.Path, ".ctmpl") {
			out = append(out, path.Join(render.ComposeRoot, role, strings.TrimSuffix(path.Base(f.Path), ".ctmpl")))
		}
	}
	sort.Strings(out)
	return out
}

func (s *ComposeUp) Run(ctx context.Context) error {
	role := s.Facts.User.Role
	if err := s.waitEnv(ctx, role); err != nil {
		return err
	}
	c := containers.Compose{Docker: s.Docker, Project: role, File: s.Root.Path(render.ComposeFile(role)), Lock: s.Root.Path(render.ComposeLock(role))}
	// consul-template runs the same command when it first renders the env
	// file; the shared lock serialises the two, and one retry covers an
	// up that consul-template's own run left half-done.
	err := retry.Do(ctx, retry.Policy{Initial: 2 * time.Second, Attempts: 2}, func(ctx context.Context) error {
		return c.Up(ctx, s.Timeout)
	})
	if err == nil {
		if s.Rec != nil {
			_ = s.Rec.Update(func(st *State) { st.Compose = nil })
		}
		return nil
	}
	hint := fmt.Sprintf("docker compose -p %s logs %s", role, role)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if s.API != nil {
		if f, ok := containers.Diagnose(dctx, s.API, role, 20); ok {
			hint = fmt.Sprintf("docker compose -p %s logs %s", role, f.Service)
			err = fmt.Errorf("service %s is %s: %w", f.Service, f.State, err)
			if s.Rec != nil {
				_ = s.Rec.Update(func(st *State) {
					st.Compose = &ComposeState{Project: role, Unhealthy: f.Service, State: f.State, Logs: f.Logs}
				})
			}
		}
	}
	return WithHint(err, hint)
}

func (s *ComposeUp) waitEnv(ctx context.Context, role string) error {
	want := EnvFiles(s.Facts.Files, role)
	if len(want) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.EnvTimeout)
	defer cancel()
	pol := s.Poll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 200*time.Millisecond, 2*time.Second
	}
	var missing []string
	err := retry.Do(ctx, pol, func(context.Context) error {
		missing = missing[:0]
		for _, p := range want {
			if _, err := os.Stat(s.Root.Path(p)); err != nil {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %s", strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil {
		return WithHint(fmt.Errorf("consul-template has not rendered %s after %s (it needs Consul, and every key its template requires under codelab/%s/%s/ in Consul KV)",
			strings.Join(missing, ", "), s.EnvTimeout, s.Facts.User.Env, role), "journalctl -u consul-template -n 50")
	}
	return nil
}
