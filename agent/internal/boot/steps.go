package boot

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codelab-app/infra/internal/baked"
	"github.com/codelab-app/infra/roles"

	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/firewall"
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
	StepFirewall      = "firewall"
	StepUnits         = "units"
	StepConsulReady   = "consul-ready"
	StepConsulACL     = "consul-acl"
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
	// UserDataSHA256 is the user_data line's SHA-256 (hex), from
	// parse-userdata.
	UserDataSHA256 string
	// EngineAPI is dockerd's API version, from the docker step ("" when
	// it could not tell); render sets what only newer Engines take.
	EngineAPI string
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

// FetchMetadata reads the droplet's metadata. The metadata service being
// unreachable is a wait, not a failure: the step retries with capped
// backoff until it answers, and records what it is waiting for.
type FetchMetadata struct {
	Facts *Facts
	// Fetch makes one bounded attempt (it may retry inside its own bound).
	Fetch func(ctx context.Context) (metadata.Metadata, error)
	Rec   *Recorder
	Poll  retry.Policy
}

func (s *FetchMetadata) Name() string { return StepFetchMetadata }
func (s *FetchMetadata) Run(ctx context.Context) error {
	pol := s.Poll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = time.Second, 10*time.Second
	}
	var m metadata.Metadata
	err := retry.Do(ctx, pol, func(ctx context.Context) error {
		var err error
		m, err = s.Fetch(ctx)
		if err != nil {
			s.Rec.Wait(StepFetchMetadata, Wait{What: "the metadata service", Reason: err.Error(), Hint: metadataHint})
		}
		return err
	})
	if err != nil {
		return WithHint(err, metadataHint)
	}
	s.Rec.Unwait(StepFetchMetadata)
	s.Facts.Meta = m
	if s.Rec != nil {
		_ = s.Rec.Update(func(st *State) { st.DropletID = m.DropletID })
	}
	return nil
}

const metadataHint = "curl -s http://169.254.169.254/metadata/v1.json"

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
	sum := sha256.Sum256([]byte(line))
	s.Facts.UserDataSHA256 = hex.EncodeToString(sum[:])
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
// in; the changed paths decide which units restart. Before it changes any
// file it records the units whose config is about to change in
// RestartPendingFile, so a boot killed between the write and the restart
// still restarts them on its next run.
type Render struct {
	Facts      *Facts
	Root       fsutil.Root
	Validators []render.Validator
	Log        *slog.Logger
}

func (s *Render) Name() string { return StepRender }
func (s *Render) Run(ctx context.Context) error {
	files := s.Facts.Files
	if s.Facts.EngineAPI != "" {
		// parse-userdata rendered before dockerd said its version; only
		// the Compose files' healthchecks depend on it.
		var err error
		files, err = render.Render(render.Input{Meta: s.Facts.Meta, User: s.Facts.User, EngineAPIVersion: s.Facts.EngineAPI})
		if err != nil {
			return err
		}
	}
	pending, err := ReadRestartPending(s.Root)
	if err != nil {
		return err
	}
	before := func(changing []string) error {
		add := UnitsFor(changing)
		if len(add) == 0 {
			return nil
		}
		return WriteRestartPending(s.Root, append(pending, add...))
	}
	changed, err := render.ApplyHook(ctx, s.Root, files, before, s.Validators...)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	s.Facts.Changed = changed
	if s.Log != nil {
		s.Log.Info("rendered", slog.Int("files", len(files)), slog.Any("changed", changed),
			slog.String("engine_api", s.Facts.EngineAPI), slog.Bool("healthcheck_start_interval", render.StartIntervalSupported(s.Facts.EngineAPI)))
	}
	failpoint(s.Root, s.Log, "kill-after-render")
	return nil
}

// FailpointFile, when it holds a failpoint's name, makes the agent SIGKILL
// itself at that point, once (it removes the file first). The end-to-end
// fault tests use it to crash a boot where no outside timing can hit it
// reliably: "kill-after-render" dies after render wrote new config and
// before the units step restarts anything. Nothing else writes the file.
const FailpointFile = "/run/codelab/failpoint"

func failpoint(root fsutil.Root, log *slog.Logger, name string) {
	b, err := root.ReadFile(FailpointFile)
	if err != nil || strings.TrimSpace(string(b)) != name {
		return
	}
	if err := os.Remove(root.Path(FailpointFile)); err != nil {
		return
	}
	if log != nil {
		log.Warn("failpoint: the agent kills itself here", slog.String("failpoint", name))
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// UnitsFor maps changed droplet paths to the units that read them.
func UnitsFor(paths []string) []string {
	var out []string
	for _, p := range paths {
		var u string
		switch {
		case strings.HasPrefix(p, render.ConsulDir+"/"):
			u = ConsulUnit
		case strings.HasPrefix(p, render.TemplateDir+"/"):
			u = ConsulTemplateUnit
		case p == render.NodeExporterDefaults:
			u = NodeExporterUnit
		}
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// ReadRestartPending returns the units a previous render changed the
// config of and that were not restarted since.
func ReadRestartPending(root fsutil.Root) ([]string, error) {
	b, err := root.ReadFile(RestartPendingFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", RestartPendingFile, err)
	}
	var out []string
	for _, l := range strings.Fields(string(b)) {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out, nil
}

// WriteRestartPending records units as needing a restart.
func WriteRestartPending(root fsutil.Root, units []string) error {
	units = slices.Clone(units)
	slices.Sort(units)
	units = slices.Compact(units)
	if _, err := root.WriteFile(RestartPendingFile, []byte(strings.Join(units, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("record units to restart: %w", err)
	}
	return nil
}

// ClearRestartPending forgets the pending restarts once they are done.
func ClearRestartPending(root fsutil.Root) error {
	if err := os.Remove(root.Path(RestartPendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear %s: %w", RestartPendingFile, err)
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
	AgentUnit          = "codelab-agent.service"
	DockerUnit         = "docker.service"
	ConsulUnit         = "consul.service"
	ConsulTemplateUnit = "consul-template.service"
	// NodeExporterUnit is Debian's prometheus-node-exporter, on the images
	// that install it; it reads render.NodeExporterDefaults.
	NodeExporterUnit = "prometheus-node-exporter.service"
)

// DockerStep makes sure dockerd is enabled and active, and records its
// API version for render. It needs nothing else, so pulls can start as
// soon as user_data is parsed.
type DockerStep struct {
	Facts   *Facts
	Units   Units
	API     containers.API // nil: the Engine's version is not asked
	Timeout time.Duration
	Rec     *Recorder
	Log     *slog.Logger
}

func (s *DockerStep) Name() string { return StepDocker }
func (s *DockerStep) Run(ctx context.Context) error {
	out, err := s.Units.Converge(ctx, []units.Want{{Name: DockerUnit}}, s.Timeout)
	detail(s.Rec, StepDocker, out)
	if err != nil {
		return unitErr(err)
	}
	if s.API == nil || s.Facts == nil {
		return nil
	}
	// An Engine that does not answer yet is no failure here: render then
	// writes what every Engine accepts, and pull-images says what is wrong.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ping, perr := s.API.Ping(pctx)
	if perr != nil {
		if s.Log != nil {
			s.Log.Warn("docker engine API version unknown; healthchecks without start_interval", slog.String("err", perr.Error()))
		}
		return nil
	}
	s.Facts.EngineAPI = ping.APIVersion
	if s.Rec != nil {
		_ = s.Rec.Update(func(st *State) {
			if i := st.index(StepDocker); i >= 0 {
				st.Steps[i].Detail = strings.TrimPrefix(st.Steps[i].Detail+", engine API "+ping.APIVersion, ", ")
			}
		})
	}
	return nil
}

// FirewallStep closes the metadata service to containers: it makes sure
// the DOCKER-USER rules of package firewall are in place (adding only what
// is missing) before anything runs a container, so it comes after the
// docker step and before the units (consul-template's exec runs compose
// up) and compose-up. codelab-firewall.service installed them already
// before dockerd started; this step is the check that status shows, and
// puts back any rule removed since.
type FirewallStep struct {
	// Apply installs the rules (firewall.Installer.Apply).
	Apply func(ctx context.Context) (firewall.Report, error)
	Rec   *Recorder
}

func (s *FirewallStep) Name() string { return StepFirewall }
func (s *FirewallStep) Run(ctx context.Context) error {
	if s.Apply == nil {
		return errors.New("close the metadata service to containers: no firewall installer")
	}
	rep, err := s.Apply(ctx)
	if err != nil {
		return WithHint(fmt.Errorf("close the metadata service to containers: %w", err), firewall.Hint)
	}
	if s.Rec != nil {
		s.Rec.SetDetail(StepFirewall, rep.String())
	}
	return nil
}

// UnitsStep enables and starts consul, consul-template and, where the image
// has it, prometheus-node-exporter, restarting each
// when render changed its config, or when a previous boot changed it and
// was killed before restarting it (RestartPendingFile).
type UnitsStep struct {
	Facts   *Facts
	Root    fsutil.Root
	Units   Units
	Timeout time.Duration
	Rec     *Recorder
}

func (s *UnitsStep) Name() string { return StepUnits }
func (s *UnitsStep) Run(ctx context.Context) error {
	pending, err := ReadRestartPending(s.Root)
	if err != nil {
		return err
	}
	wants := []units.Want{
		{Name: ConsulUnit, Restart: s.Facts.ChangedUnder(render.ConsulDir) || slices.Contains(pending, ConsulUnit)},
		{Name: ConsulTemplateUnit, Restart: s.Facts.ChangedUnder(render.TemplateDir) || slices.Contains(pending, ConsulTemplateUnit)},
		{Name: NodeExporterUnit, Restart: slices.Contains(s.Facts.Changed, render.NodeExporterDefaults) || slices.Contains(pending, NodeExporterUnit), Optional: true},
	}
	out, err := s.Units.Converge(ctx, wants, s.Timeout)
	detail(s.Rec, StepUnits, out)
	if err != nil {
		return unitErr(err)
	}
	return ClearRestartPending(s.Root)
}

func detail(rec *Recorder, step string, out []units.Outcome) {
	if rec == nil || len(out) == 0 {
		return
	}
	var parts []string
	for _, o := range out {
		if o.Action == units.Absent {
			continue // an optional unit this image does not have
		}
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

// ConsulReady waits until the local agent answers and a leader exists. No
// leader yet (servers not created, quorum not reached) is a wait, not a
// failure: with Timeout zero it waits as long as it takes, recording what
// it waits for so status can say so.
type ConsulReady struct {
	Facts   *Facts
	Consul  consul.Client
	Timeout time.Duration // 0: no limit
	Poll    retry.Policy
	Rec     *Recorder
	// ProbeCA, while there is no leader, asks the other servers for their
	// RPC certificates; a *consul.ForeignCAError (a server of another CA)
	// fails the step at once. Nil: the default, through Consul.
	ProbeCA func(ctx context.Context) error
	// ServerReachable says whether a Consul server accepts connections;
	// nil: dial the join= addresses' RPC port.
	ServerReachable func(ctx context.Context) bool
}

func (s *ConsulReady) Name() string { return StepConsulReady }

// serverReachable reports whether any join= address accepts a connection
// on Consul's server RPC port; with join=tag: the addresses are not known
// here, so it says yes (and the wait names the local agent).
func (s *ConsulReady) serverReachable(ctx context.Context) bool {
	if s.ServerReachable != nil {
		return s.ServerReachable(ctx)
	}
	addrs := s.Facts.User.Join.Addrs
	if len(addrs) == 0 {
		return true
	}
	for _, a := range addrs {
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", net.JoinHostPort(host, strconv.Itoa(consul.ServerPort)))
		cancel()
		if err == nil {
			conn.Close()
			return true
		}
	}
	return false
}

func (s *ConsulReady) probeCA(ctx context.Context, c consul.Client) error {
	if s.ProbeCA != nil {
		return s.ProbeCA(ctx)
	}
	ca, err := s.Facts.User.ClusterCA()
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return c.ProbeServersCA(ctx, s.Facts.User.Datacenter(s.Facts.Meta.Region), roots)
}
func (s *ConsulReady) Run(ctx context.Context) error {
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	pol := s.Poll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 250*time.Millisecond, 2*time.Second
	}
	// The agent recovery token opens the local agent's self and members
	// while no server can resolve tokens: before a leader, and before
	// consul-acl has made the role tokens.
	c := s.Consul
	if rec, err := s.Facts.User.AgentRecoveryToken(); err == nil {
		c = c.WithToken(rec.Reveal())
	}
	var missing string
	err := retry.Do(ctx, pol, func(ctx context.Context) error {
		h := c.Check(ctx)
		missing = h.Missing(s.Facts.User.Join.String())
		if missing != "" {
			what := "a Consul leader"
			switch {
			case !h.Reachable && s.Facts.User.Consul == userdata.ConsulClient && !s.serverReachable(ctx):
				// A client's agent answers only once a server has issued
				// its TLS certificate (auto_encrypt): with no server up,
				// what it waits for is the servers.
				missing = "no Consul server answers on its RPC port (join=" + s.Facts.User.Join.String() +
					"); a client's agent starts answering once a server has issued its TLS certificate (auto_encrypt)"
			case !h.Reachable:
				what = "the local Consul agent"
			default:
				var fe *consul.ForeignCAError
				if err := s.probeCA(ctx, c); errors.As(err, &fe) {
					missing = fe.Error()
					return retry.Permanent(fe)
				}
			}
			s.Rec.Wait(StepConsulReady, Wait{What: what, Reason: missing, Hint: "consul members; journalctl -u consul -n 50"})
			return errors.New(missing)
		}
		return nil
	})
	var fe *consul.ForeignCAError
	if errors.As(err, &fe) {
		return WithHint(fmt.Errorf("consul: %w", fe), "compare ca= in this droplet's user_data with a server's: codelab-agent userdata --check")
	}
	if err != nil {
		return WithHint(fmt.Errorf("consul not ready after %s: %s", s.Timeout, missing), "journalctl -u consul -n 50")
	}
	return nil
}

// ConsulACL, on a server, makes the cluster's ACL policies and role tokens
// exist (consul.BootstrapACL, idempotent), with the management token and
// the SecretIDs derived from the CA key. A client has nothing to do: its
// token comes in user_data and the servers make it. Until the ACL system
// answers (right after an election) it waits.
type ConsulACL struct {
	Facts *Facts
	// Bootstrap makes the policies and tokens; nil: through Consul.
	Bootstrap func(ctx context.Context, env string, roles []consul.RoleToken) error
	Consul    consul.Client
	Poll      retry.Policy
	Rec       *Recorder
	Log       *slog.Logger
}

func (s *ConsulACL) Name() string { return StepConsulACL }
func (s *ConsulACL) Run(ctx context.Context) error {
	u := s.Facts.User
	if u.Consul != userdata.ConsulServer {
		if s.Rec != nil {
			s.Rec.SetDetail(StepConsulACL, "client: its role's token comes in user_data")
		}
		return nil
	}
	toks, err := render.RoleTokens(u)
	if err != nil {
		return err
	}
	boot := s.Bootstrap
	if boot == nil {
		mgmt, err := u.ManagementToken()
		if err != nil {
			return err
		}
		c := s.Consul.WithToken(mgmt.Reveal())
		boot = c.BootstrapACL
	}
	pol := s.Poll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 500*time.Millisecond, 5*time.Second
	}
	err = retry.Do(ctx, pol, func(ctx context.Context) error {
		err := boot(ctx, u.Env, toks)
		if err != nil {
			s.Rec.Wait(StepConsulACL, Wait{What: "Consul's ACL system", Reason: err.Error(), Hint: "journalctl -u consul -n 50"})
		}
		return err
	})
	if err != nil {
		return WithHint(fmt.Errorf("consul ACL bootstrap: %w", err), "journalctl -u consul -n 50")
	}
	s.Rec.Unwait(StepConsulACL)
	if s.Rec != nil {
		s.Rec.SetDetail(StepConsulACL, fmt.Sprintf("%d role tokens in env %s", len(toks), u.Env))
	}
	return nil
}

// BakedImagesFile is where a per-service image records the role's images
// baked into it (package baked), written by the imager.
const BakedImagesFile = baked.File

// PullImages makes every image of the role's Compose file present. When
// the droplet's image has them baked in (BakedImagesFile, for the same
// role, registry= and version= as user_data, every image here at its baked
// digest) it contacts no registry at all; otherwise it pulls them
// concurrently, and says why the baked images were not used.
type PullImages struct {
	Facts     *Facts
	Puller    *containers.Puller
	Root      fsutil.Root
	TokenFile string
	Rec       *Recorder
	// BakedFile overrides BakedImagesFile (tests).
	BakedFile string
	// Wait paces the retries while the registry is unreachable.
	Wait retry.Policy
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
	baked, why := s.useBaked(ctx, &p, refs)
	if baked != nil {
		if s.Rec != nil {
			_ = s.Rec.Update(func(st *State) {
				st.Images = nil
				for _, pr := range baked {
					st.Images = append(st.Images, imageState(pr))
				}
			})
			s.Rec.SetDetail(StepPullImages, fmt.Sprintf("%d images: %d baked into this image, no registry contacted", len(refs), len(baked)))
		}
		return nil
	}
	if why != "" && p.Log != nil {
		p.Log.Info("not using the baked images: pulling", slog.String("why", why))
	}
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
	// A registry that is down is a wait: retry the failed pulls with
	// capped backoff until it answers. A missing image or refused
	// credentials fail the step at once.
	pol := s.Wait
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 5*time.Second, 30*time.Second
	}
	var out []containers.Progress
	err = retry.Do(ctx, pol, func(ctx context.Context) error {
		done = 0
		var err error
		out, err = p.PullAll(ctx, refs)
		var pe *containers.PullError
		if errors.As(err, &pe) && pe.Transient() && ctx.Err() == nil {
			s.Rec.Wait(StepPullImages, Wait{What: "the registry " + creds.Host, Reason: err.Error(), Hint: pe.Hint()})
			return err
		}
		return retry.Permanent(err)
	})
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
		d := fmt.Sprintf("%d images: %d pulled, %d already present", len(refs), pulled, present)
		if why != "" {
			d += "; not the baked images: " + why
		}
		s.Rec.SetDetail(StepPullImages, d)
	}
	var pe *containers.PullError
	if errors.As(err, &pe) {
		return WithHint(err, pe.Hint())
	}
	return err
}

// useBaked returns the images' progress, all baked, when the droplet's
// image has every one of refs baked in for this role, registry= and
// version=. Otherwise it returns why not ("" when the image bakes nothing),
// and the caller pulls.
func (s *PullImages) useBaked(ctx context.Context, p *containers.Puller, refs []string) ([]containers.Progress, string) {
	file := s.BakedFile
	if file == "" {
		file = BakedImagesFile
	}
	b, err := s.Root.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		return nil, fmt.Sprintf("cannot read %s: %v", file, err)
	}
	bk, err := baked.Parse(b)
	if err != nil {
		return nil, fmt.Sprintf("%s %v", file, err)
	}
	u := s.Facts.User
	switch {
	case bk.Role != u.Role:
		return nil, fmt.Sprintf("role=%s differs from the baked %s", u.Role, bk.Role)
	case bk.Registry != u.Registry:
		return nil, fmt.Sprintf("registry=%s differs from the baked %s", u.Registry, bk.Registry)
	case bk.Version != u.Version:
		return nil, fmt.Sprintf("version=%s differs from the baked %s", u.Version, bk.Version)
	}
	out, err := p.UseBaked(ctx, refs, bk)
	if err != nil {
		return nil, err.Error()
	}
	return out, ""
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
//
// On a reboot (Reboot: the last completed boot was for this droplet and
// user_data, and the env files it rendered are here) it does not wait for
// Consul or the env files: the plan's shortcut starts it once render and
// the images are done, and it starts the containers from the last
// rendered env files. consul-template, started by the units step,
// re-renders them from KV and re-applies the project if they changed.
type ComposeUp struct {
	// Previous is the last completed boot (ReadCompleted); nil on a first
	// boot, and on an attempt that retries a failed one.
	Previous *Completed
	fromLast bool // Reboot said yes: start from the last env files

	Facts      *Facts
	Root       fsutil.Root
	API        containers.API
	Docker     string        // docker CLI; default "docker"
	EnvTimeout time.Duration // 0: wait for the env files as long as it takes
	Timeout    time.Duration
	Rec        *Recorder
	Poll       retry.Policy
	// KVKeys lists the Consul KV keys below a prefix; while the env files
	// are missing it tells which required key is absent. Nil: not checked.
	KVKeys func(ctx context.Context, prefix string) ([]string, error)
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

// Reboot reports whether this boot may start the containers from the
// env files the last completed boot rendered: it was for the same droplet
// and user_data, and the Compose file and every env file are here. The
// plan asks it once render and pull-images are done.
func (s *ComposeUp) Reboot() bool {
	p, f := s.Previous, s.Facts
	if p == nil || p.DropletID != f.Meta.DropletID || p.UserDataSHA256 != f.UserDataSHA256 {
		return false
	}
	want := EnvFiles(f.Files, f.User.Role)
	if len(want) == 0 {
		return false
	}
	for _, file := range append(want, render.ComposeFile(f.User.Role)) {
		if _, err := os.Stat(s.Root.Path(file)); err != nil {
			return false
		}
	}
	s.fromLast = true
	return true
}

// FromLastEnvDetail is compose-up's detail when a reboot started the
// containers from the last rendered env files.
const FromLastEnvDetail = "started from the last rendered env files, without waiting for Consul; consul-template reconciles"

func (s *ComposeUp) Run(ctx context.Context) error {
	role := s.Facts.User.Role
	if s.fromLast {
		if s.Rec != nil {
			s.Rec.SetDetail(StepComposeUp, FromLastEnvDetail)
		}
	} else if err := s.waitEnv(ctx, role); err != nil {
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
	if s.EnvTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.EnvTimeout)
		defer cancel()
	}
	pol := s.Poll
	if pol.Initial == 0 {
		pol.Initial, pol.Max = 200*time.Millisecond, 2*time.Second
	}
	var missing []string
	err := retry.Do(ctx, pol, func(ctx context.Context) error {
		missing = missing[:0]
		for _, p := range want {
			if _, err := os.Stat(s.Root.Path(p)); err != nil {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		s.Rec.Wait(StepComposeUp, s.envWait(ctx, role, missing))
		return fmt.Errorf("missing %s", strings.Join(missing, ", "))
	})
	if err != nil {
		return WithHint(fmt.Errorf("consul-template has not rendered %s after %s (it needs Consul, and every key its template requires under codelab/%s/%s/ in Consul KV)",
			strings.Join(missing, ", "), s.EnvTimeout, s.Facts.User.Env, role), "journalctl -u consul-template -n 50")
	}
	s.Rec.Unwait(StepComposeUp)
	return nil
}

// envWait says what the missing env files wait for: a required KV key that
// is absent (and the command that sets it), else consul-template itself.
func (s *ComposeUp) envWait(ctx context.Context, role string, missing []string) Wait {
	w := Wait{
		What:   "consul-template to render " + strings.Join(missing, ", "),
		Reason: "consul-template renders the env file once Consul answers and every key its template reads exists",
		Hint:   "journalctl -u consul-template -n 50",
	}
	if s.KVKeys == nil {
		return w
	}
	env := s.Facts.User.Env
	keys, err := MissingRequired(ctx, s.KVKeys, env, role)
	if err != nil {
		w.Reason += "; cannot read Consul KV: " + err.Error()
		return w
	}
	if len(keys) == 0 {
		return w
	}
	var paths []string
	for _, k := range keys {
		paths = append(paths, roles.RequiredKVPath(env, role, k))
	}
	return Wait{
		What:   "KV key " + paths[0],
		Reason: fmt.Sprintf("role %s requires %s in Consul KV (roles/%s/required); nothing starts until it is set", role, strings.Join(paths, ", "), role),
		Hint:   "consul kv put " + paths[0] + " <value>",
	}
}

// MissingRequired returns the role's required keys (roles/<role>/required)
// that are absent from Consul KV.
func MissingRequired(ctx context.Context, list func(ctx context.Context, prefix string) ([]string, error), env, role string) ([]string, error) {
	req, err := roles.Required(role)
	if err != nil || len(req) == 0 {
		return nil, err
	}
	prefix := roles.RequiredKVPath(env, role, "")
	have, err := list(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range req {
		if !slices.Contains(have, prefix+k) {
			out = append(out, k)
		}
	}
	return out, nil
}
