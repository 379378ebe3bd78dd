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
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/internal/fileutil"
	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/codelab-app/infra/imager/internal/packer"
	"github.com/codelab-app/infra/imager/versions"
	"github.com/codelab-app/infra/internal/exitcode"
	"github.com/spf13/cobra"
)

// RequiredUnits must exist in systemd/ for a build (the install script enables them).
var RequiredUnits = []string{"codelab-agent.service", "consul.service", "consul-template.service", "codelab-ssh-hostkeys.service", "codelab-firewall.service"}

// BaseImage is the DigitalOcean image every codelab image is built from.
const BaseImage = "debian-12-x64"

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
	BuildAgent     AgentBuilder
	BuildModule    ModuleBuilder
	Now            func() time.Time
}

// ModuleBuilder builds a Go-module artifact (doctl); artifacts.BuildModule in
// production, a fake in unit tests.
type ModuleBuilder func(ctx context.Context, repo string, a artifacts.Artifact, out string, stderr io.Writer) error

func newBuildCmd(g *Globals) *cobra.Command {
	o := &BuildOptions{Globals: g, BuildAgent: GoBuildAgent, BuildModule: artifacts.BuildModule}
	cmd := &cobra.Command{
		Use:   "build app|neo4j|all [--plan] [--json] [--force] [--regions nyc3,fra1] [--debug]",
		Short: "Build the agent, then the image snapshots with Packer (all: both in parallel)",
		Long: `build builds the static codelab-agent and doctl, fetches and verifies the pinned artifacts,
and runs packer build for each image. A snapshot whose fingerprint (every input: templates,
scripts, versions, artifacts, agent binary, units, role files) matches is not rebuilt
unless --force. Ctrl-C interrupts Packer so it destroys its droplet and temporary key;
whatever remains is deleted or named.

--plan resolves the images, fingerprints, base image, regions and every artifact with its
source and verification, prints them and builds nothing on DigitalOcean (it compiles the
agent, whose checksum is part of the fingerprint; without a token it cannot say which
images are up to date). --json prints the plan, or what was built, as JSON.`,
		Args: targetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target = args[0]
			if o.Step && o.Target == "all" {
				return exitcode.UsageError("--step pauses for Enter at every Packer step: build one image at a time (app or neo4j)")
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
	if err := b.stagePayload(ctx); err != nil {
		return err
	}
	b.runPacker(ctx, todo)
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

// fingerprint computes each image's fingerprint and finds a snapshot that has it.
func (b *build) fingerprint(ctx context.Context, imgs []Image) error {
	for _, im := range imgs {
		inputs, err := Inputs(b.repo, im.Family, b.agentBin, b.arts)
		if err != nil {
			return err
		}
		b.builds = append(b.builds, &ImageBuild{Image: im, Inputs: inputs, Fingerprint: images.Fingerprint(inputs)})
	}
	if b.api == nil {
		return nil
	}
	snaps, err := images.List(ctx, b.api)
	if err != nil {
		return err
	}
	for _, ib := range b.builds {
		if s, ok := images.FindFingerprint(snaps, ib.Image.Family, ib.Fingerprint); ok {
			ib.Existing = &s
		}
	}
	return nil
}

// pending says which images are built and which are up to date.
func (b *build) pending() []*ImageBuild {
	var todo []*ImageBuild
	for _, ib := range b.builds {
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
	Error       string            `json:"error,omitempty"`
}

// report prints the outcome (and --json) and returns the failures.
func (b *build) report(todo []*ImageBuild) error {
	out := BuildOutput{SchemaVersion: SchemaVersion, LocalArtifacts: b.local, Images: []BuiltImage{}}
	var errs []error
	for _, ib := range b.builds {
		bi := BuiltImage{Family: ib.Image.Family, Fingerprint: ib.Fingerprint, Regions: []string{}}
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
	dir, err := stageTemplate(b.repo, ib.Image.Family)
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
	args := packerVars(b.repo, b.o.apiURL(), b.payload, b.override, map[string]string{
		"region":           b.regions[0],
		"snapshot_regions": hclList(b.regions),
		"base_image":       BaseImage,
		"snapshot_time":    stamp.Format("2006-01-02-1504"),
		"build_id":         buildID,
		"agent_version":    b.version,
		"git_sha":          b.sha,
		"fingerprint":      ib.Fingerprint,
		"manifest_out":     manifest,
		"local_artifacts":  fmt.Sprint(b.local),
	})
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
		sum, err := artifacts.HashFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repo, p)
		if err != nil {
			return err
		}
		in = append(in, images.Input{Path: filepath.ToSlash(rel), SHA256: sum})
		return nil
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
