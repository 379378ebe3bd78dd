package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/internal/fileutil"
	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/codelab-app/infra/imager/internal/packer"
	"github.com/codelab-app/infra/imager/internal/registry"
	"github.com/codelab-app/infra/imager/versions"
	"github.com/codelab-app/infra/internal/exitcode"
	"github.com/spf13/cobra"
)

// RequiredUnits must exist in systemd/ for a build (the install script enables them).
var RequiredUnits = []string{"codelab-agent.service", "consul.service", "consul-template.service", "codelab-ssh-hostkeys.service", "codelab-fleet.service", "codelab-fleet.timer", "codelab-firewall.service"}

// BaseImage is the DigitalOcean image the two base images are built from.
const BaseImage = "debian-12-x64"

// DefaultRegistry is where the roles' images come from: the agent's default for
// user_data's registry=.
const DefaultRegistry = "registry.digitalocean.com/codelab"

// DefaultAppVersion is the application image tag a service image bakes (user_data's
// version= default).
const DefaultAppVersion = "latest"

// BuildOptions are `imager build`'s inputs.
type BuildOptions struct {
	*Globals
	Target         string
	Force          bool
	Debug          bool     // PACKER_LOG=1 and the imager's debug logs, prefixed by image
	Step           bool     // Packer's -debug: pause for Enter at every step
	Regions        []string // snapshot regions; the first is the build region (default: the versions file)
	Plan           bool     // resolve and print, build nothing
	JSON           bool
	LocalArtifacts string // folder of local artifact files (the local DigitalOcean)
	AgentVersion   string // default: git describe
	GitSHA         string // default: git rev-parse HEAD
	AppVersion     string // application image tag the service images bake (--version)
	Registry       string // registry path of the roles' images (--registry)
	// RegistryTransport carries the registry requests; nil is the default transport.
	RegistryTransport http.RoundTripper
	BuildAgent        AgentBuilder
	BuildModule       ModuleBuilder
	Now               func() time.Time
}

// ModuleBuilder builds a Go-module artifact (doctl); artifacts.BuildModule in
// production, a fake in unit tests.
type ModuleBuilder func(ctx context.Context, repo string, a artifacts.Artifact, out string, stderr io.Writer) error

func newBuildCmd(g *Globals) *cobra.Command {
	o := &BuildOptions{Globals: g, BuildAgent: GoBuildAgent, BuildModule: artifacts.BuildModule}
	cmd := &cobra.Command{
		Use:   "build app|neo4j|api|web|landing|sites|services|all [--version v1] [--registry R] [--plan] [--json] [--force] [--regions nyc3,fra1] [--debug]",
		Short: "Build the agent, then the image snapshots with Packer (all: the two bases, then the four service images)",
		Long: `build builds the static codelab-agent and doctl, fetches and verifies the pinned artifacts,
and runs packer build for each image. A snapshot whose fingerprint (every input: templates,
scripts, versions, artifacts, agent binary, units, role files) matches is not rebuilt
unless --force. Ctrl-C interrupts Packer so it destroys its droplet and temporary key;
whatever remains is deleted or named.

app is codelab-services-base and neo4j codelab-neo4j-base, both from debian-12-x64.
api, web, landing and sites (services: all four) are codelab-<role>-base: the newest
services base with the current fingerprint (built first when there is none) plus the
role's images at --version, resolved to digests against --registry before any droplet
is created, pulled by digest on the build droplet and listed in
/etc/codelab/baked-images.json. Their fingerprint is the base's plus those digests (and
the template and role files): a new app image or a new base means a rebuild. The
registry token comes from CODELAB_REGISTRY_TOKEN (anonymous when unset) and never lands
in the image. all builds the two bases in parallel, then the four service images in
parallel.

--plan resolves the images, fingerprints, base image, regions and every artifact with its
source and verification, prints them and builds nothing on DigitalOcean (it compiles the
agent, whose checksum is part of the fingerprint; without a token it cannot say which
images are up to date). --json prints the plan, or what was built, as JSON.`,
		Args: targetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target = args[0]
			if o.Step && (o.Target == "all" || o.Target == "services") {
				return exitcode.UsageError("--step pauses for Enter at every Packer step: build one image at a time (app, neo4j, api, web, landing or sites)")
			}
			if o.Debug && o.Level != nil {
				o.Level.Set(slog.LevelDebug)
			}
			return RunBuild(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Force, "force", false, "build even if a snapshot with the same fingerprint exists")
	f.BoolVar(&o.Plan, "plan", false, "resolve and print the images, fingerprints, regions and artifacts; build nothing")
	f.BoolVar(&o.JSON, "json", false, "print the plan (--plan) or what was built as JSON on stdout")
	f.BoolVar(&o.Debug, "debug", false, "debug output: Packer's log (PACKER_LOG=1) and the imager's debug logs, prefixed by image")
	f.BoolVar(&o.Step, "step", false, "Packer's -debug: pause for Enter at every step and keep the temporary SSH key (one image)")
	f.StringSliceVar(&o.Regions, "regions", nil, "regions the snapshot is transferred to, the first is the build region (default: snapshot_regions in "+versions.File+")")
	f.StringVar(&o.LocalArtifacts, "local-artifacts", "", "local DigitalOcean builds: take consul and consul-template from this folder and the overrides in its "+artifacts.LocalOverrideFile+" (env CODELAB_LOCAL_ARTIFACTS); the image is tagged "+images.TagLocalArtifacts)
	f.StringVar(&o.AgentVersion, "agent-version", "", "codelab-agent version (default: git describe --tags --always --dirty)")
	f.StringVar(&o.GitSHA, "git-sha", "", "git commit (default: git rev-parse HEAD)")
	f.StringVar(&o.AppVersion, "version", DefaultAppVersion, "application image tag the service images bake (user_data version=)")
	f.StringVar(&o.Registry, "registry", DefaultRegistry, "registry path of the roles' images (user_data registry=)")
	return cmd
}

// ImageBuild is the plan and outcome for one image.
type ImageBuild struct {
	Image       Image
	Fingerprint string
	Inputs      []images.Input
	Existing    *images.Snapshot // a snapshot with the same fingerprint
	Result      packer.Result
	Name        string
	Packages    map[string]string // apt package versions the droplet installed
	Err         error

	// Dependency marks the services base when it is built (or looked up) only because a
	// service image needs it.
	Dependency bool
	// Service images: the base they build on, what they bake, and a resolve failure
	// (only a --plan goes on after one).
	Base       *ImageBuild
	Baked      *registry.Baked
	ResolveErr error
}

// build is one run of `imager build`: what it resolved, step by step.
type build struct {
	o        *BuildOptions
	log      *slog.Logger
	repo     string
	vers     *versions.Versions
	override string // the local versions override file, if any
	local    bool
	localDir string
	arts     []artifacts.Artifact
	regions  []string
	api      images.API // nil for a plan without a token
	token    string
	runner   *packer.Runner
	version  string
	sha      string
	work     string
	payload  string
	agentBin string
	builds   []*ImageBuild
}

// RunBuild builds the target's images (or, with Plan, prints what it would build).
func RunBuild(ctx context.Context, o *BuildOptions) error {
	b := &build{o: o, log: o.logger()}
	imgs, err := ParseTarget(o.Target)
	if err != nil {
		return err
	}
	if err := b.resolve(); err != nil {
		return err
	}
	if err := b.connect(ctx); err != nil {
		return err
	}
	if err := b.checkPacker(ctx); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp("", "imager-build-"); err != nil {
		return err
	}
	if !o.Step {
		defer os.RemoveAll(b.work)
	}
	b.payload = filepath.Join(b.work, "payload")
	if err := b.buildAgent(ctx); err != nil {
		return err
	}
	if err := b.fingerprint(ctx, imgs); err != nil {
		return err
	}
	if o.Plan {
		return b.printPlan()
	}
	todo := b.pending()
	if len(todo) == 0 {
		return b.report(nil)
	}
	var bases, services []*ImageBuild
	for _, ib := range todo {
		if ib.Image.IsService() {
			services = append(services, ib)
		} else {
			bases = append(bases, ib)
		}
	}
	if len(bases) > 0 {
		if err := b.stagePayload(ctx); err != nil {
			return err
		}
		b.runPacker(ctx, bases)
	}
	// The service images start once the bases are done: their source is the services
	// base snapshot.
	var ready []*ImageBuild
	for _, ib := range services {
		base := ib.Base
		switch {
		case base.Err != nil:
			ib.Err = fmt.Errorf("the services base it builds on (%s) failed: %w", base.Image.Family, base.Err)
		case slices.Contains(bases, base) && base.Result.SnapshotID == 0:
			ib.Err = fmt.Errorf("the services base it builds on (%s) produced no snapshot", base.Image.Family)
		default:
			ready = append(ready, ib)
		}
	}
	b.runPacker(ctx, ready)
	return b.report(todo)
}

// resolve reads the versions file (and a local override), resolves every artifact and
// the regions, and checks the repository files a build uploads.
func (b *build) resolve() error {
	o := b.o
	var err error
	if b.repo, err = o.repo(); err != nil {
		return err
	}
	if b.vers, err = versions.Load(filepath.Join(b.repo, versions.File)); err != nil {
		return err
	}
	local := o.LocalArtifacts
	if local == "" {
		local = o.getenv("CODELAB_LOCAL_ARTIFACTS")
	}
	if local != "" {
		b.local, b.localDir = true, local
		p := filepath.Join(local, artifacts.LocalOverrideFile)
		if _, err := os.Stat(p); err == nil {
			ov, err := versions.LoadOverride(p)
			if err != nil {
				return err
			}
			b.vers, b.override = b.vers.With(ov), p
		}
	}
	if b.arts, err = artifacts.Resolve(b.vers, artifacts.Catalog, local); err != nil {
		return err
	}
	for _, a := range b.arts {
		if a.Source == artifacts.SourceGoModule {
			if err := artifacts.CheckModulePin(b.repo, a); err != nil {
				return err
			}
		}
	}
	b.regions = b.vers.Regions()
	if len(o.Regions) > 0 {
		b.regions = nil
		for _, r := range o.Regions {
			if r = strings.TrimSpace(r); r != "" && !slices.Contains(b.regions, r) {
				b.regions = append(b.regions, r)
			}
		}
		if len(b.regions) == 0 {
			return exitcode.UsageError("--regions is empty")
		}
	}
	return preflight(b.repo)
}

// connect checks the token and its write scope before Packer starts. A plan needs no
// token: without one it cannot tell which images are up to date.
func (b *build) connect(ctx context.Context) error {
	if b.o.Plan {
		if _, err := b.o.token(); err != nil {
			return nil
		}
	}
	var err error
	if b.api, b.token, err = b.o.api(ctx); err != nil {
		return err
	}
	if b.o.Plan {
		return nil
	}
	return b.api.CheckWrite(ctx)
}

func (b *build) checkPacker(ctx context.Context) error {
	if b.o.Plan {
		return nil
	}
	b.runner = b.o.packer("DIGITALOCEAN_TOKEN="+b.token, "DIGITALOCEAN_API_URL="+b.o.apiURL())
	pv, err := b.runner.Version(ctx)
	if err != nil {
		return err
	}
	if !pv.NeedsPluginInit() {
		return fmt.Errorf("packer %s is too old: the templates need Packer 1.9 with the DigitalOcean plugin (make deps builds both; --packer names the binary)", pv)
	}
	return nil
}

func (b *build) buildAgent(ctx context.Context) error {
	o := b.o
	b.version, b.sha = o.AgentVersion, o.GitSHA
	if b.version == "" || b.sha == "" {
		v, s := gitDescribe(ctx, b.repo)
		if b.version == "" {
			b.version = v
		}
		if b.sha == "" {
			b.sha = s
		}
	}
	b.agentBin = filepath.Join(b.payload, "bin", "codelab-agent")
	if err := os.MkdirAll(filepath.Dir(b.agentBin), 0o755); err != nil {
		return err
	}
	start := time.Now()
	if err := o.BuildAgent(ctx, AgentBuild{Repo: b.repo, Out: b.agentBin, Version: b.version, Commit: b.sha, Stderr: o.Stderr}); err != nil {
		return err
	}
	b.log.Info("built codelab-agent", "version", b.version, "commit", b.sha, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// fingerprint computes each image's fingerprint and finds a snapshot that has it. A
// service image needs the services base (added as a dependency when not asked for) and
// its role's images resolved to digests: that happens here, before any droplet exists.
func (b *build) fingerprint(ctx context.Context, imgs []Image) error {
	var base *ImageBuild
	add := func(im Image, dep bool) (*ImageBuild, error) {
		inputs, err := Inputs(b.repo, im.Family, b.agentBin, b.arts)
		if err != nil {
			return nil, err
		}
		ib := &ImageBuild{Image: im, Inputs: inputs, Fingerprint: images.Fingerprint(inputs), Dependency: dep}
		b.builds = append(b.builds, ib)
		return ib, nil
	}
	for _, im := range imgs {
		if im.IsService() {
			continue
		}
		ib, err := add(im, false)
		if err != nil {
			return err
		}
		if im.Family == ServicesBase.Family {
			base = ib
		}
	}
	var services []Image
	for _, im := range imgs {
		if im.IsService() {
			services = append(services, im)
		}
	}
	if len(services) > 0 && base == nil {
		var err error
		if base, err = add(ServicesBase, true); err != nil {
			return err
		}
	}
	var snaps []images.Snapshot
	if b.api != nil {
		var err error
		if snaps, err = images.List(ctx, b.api); err != nil {
			return err
		}
	}
	resolver := &registry.Resolver{Token: b.registryToken(), Transport: b.o.RegistryTransport}
	for _, im := range services {
		ib := &ImageBuild{Image: im, Base: base}
		b.builds = append(b.builds, ib)
		if ib.Baked, ib.ResolveErr = b.resolveImages(ctx, resolver, im.Role); ib.ResolveErr != nil {
			if !b.o.Plan {
				return fmt.Errorf("%s: %w", im.Family, ib.ResolveErr)
			}
			continue
		}
		inputs, err := ServiceInputs(b.repo, im, base.Fingerprint, ib.Baked.Images)
		if err != nil {
			return err
		}
		ib.Inputs, ib.Fingerprint = inputs, images.Fingerprint(inputs)
	}
	for _, ib := range b.builds {
		if ib.Fingerprint == "" {
			continue
		}
		if s, ok := images.FindFingerprint(snaps, ib.Image.Family, ib.Fingerprint); ok {
			ib.Existing = &s
		}
	}
	return nil
}

// registryToken is the registry token from the environment ("" is anonymous).
func (b *build) registryToken() string {
	return strings.TrimSpace(b.o.getenv(registry.TokenEnv))
}

func (b *build) registryPath() string {
	if b.o.Registry == "" {
		return DefaultRegistry
	}
	return strings.TrimSuffix(b.o.Registry, "/")
}

func (b *build) appVersion() string {
	if b.o.AppVersion == "" {
		return DefaultAppVersion
	}
	return b.o.AppVersion
}

// resolveImages renders the role's image references for --registry and --version and
// resolves each to the digest the registry serves.
func (b *build) resolveImages(ctx context.Context, r *registry.Resolver, role string) (*registry.Baked, error) {
	refs, err := registry.RoleRefs(role, b.registryPath(), b.appVersion())
	if err != nil {
		return nil, err
	}
	baked := &registry.Baked{SchemaVersion: registry.BakedSchemaVersion, Role: role, Version: b.appVersion(), Registry: b.registryPath()}
	for _, ref := range refs {
		start := time.Now()
		im, err := r.Resolve(ctx, ref)
		if err != nil {
			return nil, err
		}
		b.log.Info("resolved image", "role", role, "ref", ref, "digest", im.Digest, "duration", time.Since(start).Round(time.Millisecond))
		baked.Images = append(baked.Images, im)
	}
	return baked, nil
}

// pending says which images are built and which are up to date. The services base,
// when only a dependency, is built only if a service image needs it and it is missing.
func (b *build) pending() []*ImageBuild {
	var todo []*ImageBuild
	needBase := false
	for _, ib := range b.builds {
		if ib.Image.IsService() && (ib.Existing == nil || b.o.Force) {
			needBase = true
		}
	}
	for _, ib := range b.builds {
		if ib.Dependency {
			if !needBase {
				continue
			}
			if s := ib.Existing; s != nil {
				b.say("%s: the service images build on snapshot %s (id %d), fingerprint %s\n", ib.Image.Family, s.Name, s.ID, ib.Fingerprint)
				continue
			}
			b.say("%s: no snapshot has fingerprint %s; building it first (the service images build on it)\n", ib.Image.Family, ib.Fingerprint)
			todo = append(todo, ib)
			continue
		}
		if s := ib.Existing; s != nil {
			if !b.o.Force {
				b.say("%s: up to date: snapshot %s (id %d) has fingerprint %s; skipping (--force rebuilds)\n",
					ib.Image.Family, s.Name, s.ID, ib.Fingerprint)
				continue
			}
			b.say("%s: snapshot %s (id %d) has fingerprint %s; rebuilding (--force)\n",
				ib.Image.Family, s.Name, s.ID, ib.Fingerprint)
		}
		todo = append(todo, ib)
	}
	return todo
}

// say prints a progress line: on stdout, or on stderr when stdout carries JSON.
func (b *build) say(format string, args ...any) {
	w := b.o.Stdout
	if b.o.JSON {
		w = b.o.Stderr
	}
	fmt.Fprintf(w, format, args...)
}

// stagePayload fills the payload: verified artifacts, doctl built from its module, units,
// role files and the checksums the droplet checks.
func (b *build) stagePayload(ctx context.Context) error {
	o := b.o
	if b.local {
		b.say("LOCAL-ARTIFACTS BUILD: stand-in artifacts and a test apt key (%s); the snapshots are tagged %s and are not production images\n",
			b.localDir, images.TagLocalArtifacts)
	}
	cache := &artifacts.Cache{Log: b.log, Client: o.DownloadClient}
	var err error
	if cache.Dir, err = o.cacheDir(); err != nil {
		return err
	}
	if err := cache.Stage(ctx, b.arts, b.payload); err != nil {
		return err
	}
	for _, a := range b.arts {
		if a.Source != artifacts.SourceGoModule {
			continue
		}
		start := time.Now()
		if err := o.BuildModule(ctx, b.repo, a, filepath.Join(b.payload, filepath.FromSlash(a.Dest)), o.Stderr); err != nil {
			return err
		}
		b.log.Info("built from its Go module", "artifact", a.Name, "version", a.Version, "duration", time.Since(start).Round(time.Millisecond))
	}
	if err := stageRepoFiles(b.repo, b.payload); err != nil {
		return err
	}
	return artifacts.WriteChecksums(b.payload)
}

// runPacker builds the images, in parallel unless --step.
func (b *build) runPacker(ctx context.Context, todo []*ImageBuild) {
	now := time.Now
	if b.o.Now != nil {
		now = b.o.Now
	}
	stamp := now().UTC()
	lines := packer.NewLines(b.o.Stderr)
	if b.o.Step {
		for _, ib := range todo {
			ib.Err = b.buildImage(ctx, lines, ib, stamp)
		}
		return
	}
	var wg sync.WaitGroup
	for _, ib := range todo {
		wg.Go(func() { ib.Err = b.buildImage(ctx, lines, ib, stamp) })
	}
	wg.Wait()
}

// BuildOutput is `imager build --json`: what was built, for the next CI step.
type BuildOutput struct {
	SchemaVersion  int          `json:"schemaVersion"`
	LocalArtifacts bool         `json:"localArtifacts"`
	Images         []BuiltImage `json:"images"`
}

// BuiltImage is one image of BuildOutput.
type BuiltImage struct {
	Family      string            `json:"family"`
	Status      string            `json:"status"` // built, up-to-date, failed
	Name        string            `json:"name,omitempty"`
	ID          int               `json:"id,omitempty"`
	Regions     []string          `json:"regions"`
	Fingerprint string            `json:"fingerprint"`
	Packages    map[string]string `json:"packages,omitempty"`
	// Service images: the registry and version they bake and the images with digests.
	Registry   string           `json:"registry,omitempty"`
	AppVersion string           `json:"appVersion,omitempty"`
	Baked      []registry.Image `json:"bakedImages,omitempty"`
	Error      string           `json:"error,omitempty"`
}

// report prints the outcome (and --json) and returns the failures.
func (b *build) report(todo []*ImageBuild) error {
	out := BuildOutput{SchemaVersion: SchemaVersion, LocalArtifacts: b.local, Images: []BuiltImage{}}
	var errs []error
	for _, ib := range b.builds {
		if ib.Dependency && !slices.Contains(todo, ib) {
			continue
		}
		bi := BuiltImage{Family: ib.Image.Family, Fingerprint: ib.Fingerprint, Regions: []string{}}
		if ib.Baked != nil {
			bi.Registry, bi.AppVersion, bi.Baked = ib.Baked.Registry, ib.Baked.Version, ib.Baked.Images
		}
		switch {
		case !slices.Contains(todo, ib):
			bi.Status, bi.Name, bi.ID, bi.Regions = "up-to-date", ib.Existing.Name, ib.Existing.ID, ib.Existing.Regions
		case ib.Err != nil:
			bi.Status, bi.Error = "failed", ib.Err.Error()
			b.say("%s: FAILED: %v\n", ib.Image.Family, ib.Err)
			errs = append(errs, fmt.Errorf("%s: %w", ib.Image.Family, ib.Err))
		default:
			bi.Status, bi.Name, bi.ID, bi.Regions, bi.Packages = "built", ib.Name, ib.Result.SnapshotID, ib.Result.Regions, ib.Packages
			local := ""
			if b.local {
				local = " [LOCAL-ARTIFACTS build, not a production image]"
			}
			b.say("%s: built %s (id %d, regions %s), fingerprint %s, agent %s, git %s%s\n",
				ib.Image.Family, ib.Name, ib.Result.SnapshotID, strings.Join(ib.Result.Regions, ","), ib.Fingerprint, b.version, b.sha, local)
		}
		out.Images = append(out.Images, bi)
	}
	if b.o.Step && len(todo) > 0 {
		b.say("step: Packer's working folder (temporary SSH key) kept in %s\n", b.work)
	}
	if b.o.JSON {
		enc := json.NewEncoder(b.o.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("build: %w", errors.Join(errs...))
	}
	return nil
}

func (b *build) buildImage(ctx context.Context, lines *packer.Lines, ib *ImageBuild, stamp time.Time) (err error) {
	out := lines.Prefixed(ib.Image.Family + " | ")
	defer out.Close()
	log, runner := b.log, b.runner
	if b.o.Debug {
		// The imager's debug logs go with the image's Packer output, under its prefix.
		log = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})).With("image", ib.Image.Family)
		r := *b.runner
		r.Log, runner = log, &r
	}
	dir, err := stageTemplate(b.repo, ib.Image.Template())
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := runner.Init(ctx, dir, out); err != nil {
		return err
	}
	buildID := ib.Image.Family + "-" + stamp.Format("20060102-150405") + "-" + randomHex(3)
	ib.Name = images.SnapshotName(ib.Image.Family, stamp)
	workDir := filepath.Join(b.work, ib.Image.Family)
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}
	manifest := filepath.Join(workDir, "image.json")
	source, payload := BaseImage, b.payload
	extra := map[string]string{}
	if ib.Image.IsService() {
		id := ib.Base.Result.SnapshotID
		if id == 0 && ib.Base.Existing != nil {
			id = ib.Base.Existing.ID
		}
		if id == 0 {
			return fmt.Errorf("no %s snapshot to build on", ib.Base.Image.Family)
		}
		if s := ib.Base.Existing; ib.Base.Result.SnapshotID == 0 && !slices.Contains(s.Regions, b.regions[0]) {
			return fmt.Errorf("%s snapshot %s (id %d) is in %s, not in the build region %s: transfer it there or build with --regions %s,...",
				ib.Base.Image.Family, s.Name, s.ID, strings.Join(s.Regions, ","), b.regions[0], strings.Join(s.Regions, ","))
		}
		source = strconv.Itoa(id)
		// The service image's payload is only what it bakes: baked-images.json and the
		// registry login, in a folder of its own (0700), removed with the build.
		payload = filepath.Join(workDir, "bake")
		svc := ServiceManifest{Image: ib.Image.Family, Role: ib.Image.Role, Fingerprint: ib.Fingerprint,
			BaseFingerprint: ib.Base.Fingerprint, BaseSnapshot: id, Registry: ib.Baked.Registry, Version: ib.Baked.Version, Images: ib.Baked.Images}
		if err := writeBakePayload(payload, ib.Baked, svc, b.registryToken()); err != nil {
			return err
		}
		extra["role"] = ib.Image.Role
		extra["base_fingerprint"] = ib.Base.Fingerprint
		fmt.Fprintf(out, "building on %s snapshot %d; baking %s\n", ib.Base.Image.Family, id, bakedList(ib.Baked))
	}
	vars := map[string]string{
		"region":           b.regions[0],
		"snapshot_regions": hclList(b.regions),
		"base_image":       source,
		"snapshot_time":    stamp.Format("2006-01-02-1504"),
		"build_id":         buildID,
		"agent_version":    b.version,
		"git_sha":          b.sha,
		"fingerprint":      ib.Fingerprint,
		"manifest_out":     manifest,
		"local_artifacts":  fmt.Sprint(b.local),
	}
	maps.Copy(vars, extra)
	args := packerVars(b.repo, b.o.apiURL(), payload, b.override, vars)
	defer func() {
		if cerr := b.cleanupLeftovers(ctx, out, buildID, err != nil); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	start := time.Now()
	fmt.Fprintf(out, "packer build %s (build id %s, snapshot %s, regions %s)\n", ib.Image.Family, buildID, ib.Name, strings.Join(b.regions, ","))
	log.Debug("packer build", "args", args, "dir", dir)
	ib.Result, err = runner.Build(ctx, packer.BuildRequest{
		Dir: dir, Args: args, Step: b.o.Step, Log: b.o.Debug, Stdin: b.o.Stdin, WorkDir: workDir, Out: out,
	})
	log.Info("packer build", "image", ib.Image.Family, "duration", time.Since(start).Round(time.Second), "err", err)
	if err != nil {
		return err
	}
	if ib.Packages, err = readManifest(manifest); err != nil {
		return fmt.Errorf("snapshot %d was built but %w", ib.Result.SnapshotID, err)
	}
	tags := images.Tags(ib.Image.Family, ib.Fingerprint, b.version, b.sha, ib.Packages, b.local)
	if ib.Image.IsService() {
		tags = append(tags, images.ServiceTags(ib.Base.Fingerprint, ib.Baked.Version, bakedDigests(ib.Baked))...)
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := b.api.TagImage(tctx, ib.Result.SnapshotID, tags); err != nil {
		return fmt.Errorf("snapshot %d was built but could not be tagged (tag it by hand with %s): %w",
			ib.Result.SnapshotID, strings.Join(tags, " "), err)
	}
	fmt.Fprintf(out, "tagged snapshot %d: %s\n", ib.Result.SnapshotID, strings.Join(tags, " "))
	// The plugin's artifact names only the build region; the API knows where the
	// snapshot was transferred to.
	regions, err := b.api.ImageRegions(tctx, ib.Result.SnapshotID)
	if err != nil {
		return fmt.Errorf("snapshot %d was built and tagged but its regions could not be read: %w", ib.Result.SnapshotID, err)
	}
	ib.Result.Regions = regions
	if missing := slices.DeleteFunc(slices.Clone(b.regions), func(r string) bool { return slices.Contains(regions, r) }); len(missing) > 0 {
		return fmt.Errorf("snapshot %d is in %s but not in %s, which --regions asked for", ib.Result.SnapshotID,
			strings.Join(regions, ","), strings.Join(missing, ","))
	}
	return nil
}

// hclList writes regions as an HCL list for a -var of type list(string).
func hclList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// Manifest is the part of /etc/codelab/image.json the imager reads back.
type Manifest struct {
	Packages map[string]string `json:"packages"`
}

func readManifest(p string) (map[string]string, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("its image manifest did not come back: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("its image manifest %s is not JSON: %w", p, err)
	}
	return m.Packages, nil
}

// cleanupLeftovers deletes droplets Packer left behind (found by the build's tag) and,
// after a failure, names Packer's temporary SSH keys that still exist. It runs even when
// ctx is cancelled.
func (b *build) cleanupLeftovers(ctx context.Context, out io.Writer, buildID string, failed bool) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	tag := "codelab-build:" + buildID
	ds, err := b.api.ListDropletsByTag(cctx, tag)
	if err != nil {
		return fmt.Errorf("check for leftover build droplets: %w; delete droplets tagged %s by hand", err, tag)
	}
	var errs []error
	for _, d := range ds {
		if err := b.api.DeleteDroplet(cctx, d.ID); err != nil {
			errs = append(errs, fmt.Errorf("droplet %s (id %d) is left over; delete it by hand: %w", d.Name, d.ID, err))
			continue
		}
		fmt.Fprintf(out, "deleted leftover build droplet %s (id %d)\n", d.Name, d.ID)
	}
	if failed {
		keys, err := b.api.ListSSHKeys(cctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list SSH keys to check for Packer's temporary key: %w", err))
		}
		for _, k := range keys {
			if strings.HasPrefix(k.Name, "packer-") {
				fmt.Fprintf(out, "SSH key %s (id %d) looks like a temporary Packer key; if no other build is running, delete it by hand: doctl compute ssh-key delete %d\n", k.Name, k.ID, k.ID)
			}
		}
	}
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// preflight checks the repository files a build uploads.
func preflight(repo string) error {
	for _, u := range RequiredUnits {
		if _, err := os.Stat(filepath.Join(repo, "systemd", u)); err != nil {
			return fmt.Errorf("systemd unit %s is missing from %s (the install script enables it)", u, filepath.Join(repo, "systemd"))
		}
	}
	if st, err := os.Stat(filepath.Join(repo, "roles")); err != nil || !st.IsDir() {
		return fmt.Errorf("role files folder %s is missing", filepath.Join(repo, "roles"))
	}
	return nil
}

// unitFiles are systemd/*.service and systemd/*.timer.
func unitFiles(repo string) ([]string, error) {
	var out []string
	for _, pat := range []string{"*.service", "*.timer"} {
		m, err := filepath.Glob(filepath.Join(repo, "systemd", pat))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	sort.Strings(out)
	return out, nil
}

// stageRepoFiles copies the units and role files into the payload.
func stageRepoFiles(repo, payload string) error {
	units, err := unitFiles(repo)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(payload, "systemd"), 0o755); err != nil {
		return err
	}
	for _, u := range units {
		if err := fileutil.CopyFile(u, filepath.Join(payload, "systemd", filepath.Base(u)), 0o644); err != nil {
			return fmt.Errorf("stage unit: %w", err)
		}
	}
	if err := os.CopyFS(filepath.Join(payload, "roles"), os.DirFS(filepath.Join(repo, "roles"))); err != nil {
		return fmt.Errorf("stage role files: %w", err)
	}
	return nil
}

// Inputs lists every input of family's image with its SHA-256: the image's templates,
// the shared templates, scripts and versions file, the systemd units, the role files, the
// agent binary, the pinning modules of built artifacts and each artifact's identity.
// Paths are relative to the repository.
func Inputs(repo, family, agentBin string, arts []artifacts.Artifact) ([]images.Input, error) {
	var in []images.Input
	add := func(p string) error {
		x, err := fileInput(repo, p)
		if err == nil {
			in = append(in, x)
		}
		return err
	}
	walk := func(dir string) error {
		return filepath.WalkDir(filepath.Join(repo, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == filepath.Join(repo, dir) {
					return nil
				}
				return err
			}
			if d.Type().IsRegular() {
				return add(p)
			}
			return nil
		})
	}
	for _, dir := range []string{filepath.Join(packerDir, family), commonDir, pluginsDir, scriptsDir, "roles"} {
		if err := walk(dir); err != nil {
			return nil, fmt.Errorf("fingerprint %s inputs: %w", family, err)
		}
	}
	units, err := unitFiles(repo)
	if err != nil {
		return nil, err
	}
	files := append(units, filepath.Join(repo, versions.File))
	for _, a := range arts {
		if a.ToolDir() != "" {
			files = append(files, filepath.Join(repo, a.ToolDir(), "go.mod"), filepath.Join(repo, a.ToolDir(), "go.sum"))
		}
	}
	for _, p := range files {
		if err := add(p); err != nil {
			return nil, fmt.Errorf("fingerprint %s inputs: %w", family, err)
		}
	}
	sum, err := artifacts.HashFile(agentBin)
	if err != nil {
		return nil, fmt.Errorf("fingerprint %s inputs: %w", family, err)
	}
	in = append(in, images.Input{Path: "agent/codelab-agent", SHA256: sum})
	for _, a := range arts {
		in = append(in, images.Input{Path: "artifact/" + a.Name + "/" + a.Version, SHA256: a.Identity()})
	}
	return in, nil
}

// ServiceManifest is the "service" object bake-images.sh adds to a service image's
// /etc/codelab/image.json.
type ServiceManifest struct {
	Image           string           `json:"image"`
	Role            string           `json:"role"`
	Fingerprint     string           `json:"fingerprint"`
	BaseFingerprint string           `json:"baseFingerprint"`
	BaseSnapshot    int              `json:"baseSnapshot"`
	Registry        string           `json:"registry"`
	Version         string           `json:"version"`
	Images          []registry.Image `json:"images"`
}

// writeBakePayload fills dir with what packer/scripts/bake-images.sh reads:
// baked-images.json (installed as /etc/codelab/baked-images.json), images.list (one
// "<ref> <digest>" a line), service.json (the manifest's service object) and
// docker/config.json, the registry login the droplet pulls with (0600; empty auths when
// the pull is anonymous). The droplet removes the login as soon as the pulls are done,
// cleanup.sh the rest, and the hygiene gate checks.
func writeBakePayload(dir string, baked *registry.Baked, svc ServiceManifest, token string) error {
	if err := os.MkdirAll(filepath.Join(dir, "docker"), 0o700); err != nil {
		return fmt.Errorf("stage the images to bake: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("stage the images to bake: %w", err)
	}
	data, err := baked.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "baked-images.json"), data, 0o644); err != nil {
		return fmt.Errorf("stage the images to bake: %w", err)
	}
	var list strings.Builder
	for _, im := range baked.Images {
		if strings.ContainsAny(im.Ref+im.Digest, " \t\n") {
			return fmt.Errorf("stage the images to bake: %q %q holds white space", im.Ref, im.Digest)
		}
		fmt.Fprintf(&list, "%s %s\n", im.Ref, im.Digest)
	}
	if err := os.WriteFile(filepath.Join(dir, "images.list"), []byte(list.String()), 0o644); err != nil {
		return fmt.Errorf("stage the images to bake: %w", err)
	}
	sj, err := json.Marshal(svc)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "service.json"), sj, 0o644); err != nil {
		return fmt.Errorf("stage the images to bake: %w", err)
	}
	cfg, err := registry.DockerConfig(baked.Registry, token)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "docker", "config.json"), cfg, 0o600); err != nil {
		return fmt.Errorf("stage the registry login: %w", err)
	}
	return nil
}

// bakedDigests maps each baked image's repository name (api for .../codelab/api) to its
// digest.
func bakedDigests(baked *registry.Baked) map[string]string {
	out := map[string]string{}
	for _, im := range baked.Images {
		repo, err := registry.Repository(im.Ref)
		if err != nil {
			repo = im.Ref
		}
		out[repo[strings.LastIndex(repo, "/")+1:]] = im.Digest
	}
	return out
}

func bakedList(baked *registry.Baked) string {
	var parts []string
	for _, im := range baked.Images {
		parts = append(parts, im.Ref+"@"+im.Digest)
	}
	return strings.Join(parts, ", ")
}

// fileInput is the file at p as a fingerprint input: its path relative to repo and its
// SHA-256.
func fileInput(repo, p string) (images.Input, error) {
	sum, err := artifacts.HashFile(p)
	if err != nil {
		return images.Input{}, err
	}
	rel, err := filepath.Rel(repo, p)
	if err != nil {
		return images.Input{}, err
	}
	return images.Input{Path: filepath.ToSlash(rel), SHA256: sum}, nil
}

// ServiceInputs are the inputs of a service image: the services base's fingerprint,
// each baked image reference with its digest, the services template, the shared
// templates, the scripts and the role's files. Nothing else: the base's fingerprint
// covers the rest.
func ServiceInputs(repo string, im Image, baseFingerprint string, baked []registry.Image) ([]images.Input, error) {
	in := []images.Input{{Path: "base/" + ServicesBase.Family, SHA256: baseFingerprint}}
	for _, bi := range baked {
		in = append(in, images.Input{Path: "image/" + bi.Ref, SHA256: bi.Digest})
	}
	for _, dir := range []string{filepath.Join(packerDir, ServicesTemplate), commonDir, pluginsDir, scriptsDir, filepath.Join("roles", im.Role)} {
		err := filepath.WalkDir(filepath.Join(repo, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			x, err := fileInput(repo, p)
			if err == nil {
				in = append(in, x)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("fingerprint %s inputs: %w", im.Family, err)
		}
	}
	return in, nil
}
