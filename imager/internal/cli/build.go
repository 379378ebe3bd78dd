package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/codelab-app/infra/imager/internal/packer"
	"github.com/spf13/cobra"
)

// RequiredUnits must exist in systemd/ for a build (the install script enables them).
var RequiredUnits = []string{"codelab-agent.service", "consul.service", "consul-template.service", "codelab-ssh-hostkeys.service"}

// BuildOptions are `imager build`'s inputs.
type BuildOptions struct {
	*Globals
	Target         string
	Force          bool
	Debug          bool
	Region         string
	LocalArtifacts string // folder of local artifact files (the local DigitalOcean)
	AgentVersion   string // default: git describe
	GitSHA         string // default: git rev-parse HEAD
	BuildAgent     AgentBuilder
	Now            func() time.Time
}

func newBuildCmd(g *Globals) *cobra.Command {
	o := &BuildOptions{Globals: g, BuildAgent: GoBuildAgent}
	cmd := &cobra.Command{
		Use:   "build app|neo4j|all [--force] [--debug]",
		Short: "Build the agent, then the image snapshots with Packer (all: both in parallel)",
		Long: `build builds the static codelab-agent, fetches and verifies the pinned artifacts, and runs
packer build for each image. A snapshot whose fingerprint (every input: templates, scripts,
versions, artifacts, agent binary, units, role files) matches is not rebuilt unless --force.
Ctrl-C interrupts Packer so it destroys its droplet and temporary key; whatever remains is
deleted or named.`,
		Args: targetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target = args[0]
			return RunBuild(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Force, "force", false, "build even if a snapshot with the same fingerprint exists")
	f.BoolVar(&o.Debug, "debug", false, "Packer's debug mode: pause between steps, keep the temporary SSH key (builds run one at a time)")
	f.StringVar(&o.Region, "region", "nyc3", "region of the build droplet and the snapshot")
	f.StringVar(&o.LocalArtifacts, "local-artifacts", "", "take artifacts found in this folder (consul, consul-template, docker-compose, doctl, ...) instead of the vendor downloads, checksummed locally (env CODELAB_LOCAL_ARTIFACTS)")
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
	Err         error
}

// RunBuild builds the target's images.
func RunBuild(ctx context.Context, o *BuildOptions) error {
	log := o.logger()
	imgs, err := ParseTarget(o.Target)
	if err != nil {
		return err
	}
	repo, err := o.repo()
	if err != nil {
		return err
	}
	api, token, err := o.api(ctx)
	if err != nil {
		return err
	}
	local := o.LocalArtifacts
	if local == "" {
		local = o.getenv("CODELAB_LOCAL_ARTIFACTS")
	}
	versions, err := artifacts.LoadVersions(filepath.Join(repo, artifacts.VersionsFile))
	if err != nil {
		return err
	}
	arts, err := artifacts.Resolve(versions, artifacts.Catalog, local)
	if err != nil {
		return err
	}
	if err := preflight(repo); err != nil {
		return err
	}
	runner := o.packer("DIGITALOCEAN_API_TOKEN="+token, "DIGITALOCEAN_API_URL="+o.apiURL())
	pv, err := runner.Version(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "imager-build-")
	if err != nil {
		return err
	}
	if !o.Debug {
		defer os.RemoveAll(work)
	}
	payload := filepath.Join(work, "payload")

	version, sha := o.AgentVersion, o.GitSHA
	if version == "" || sha == "" {
		v, s := gitDescribe(ctx, repo)
		if version == "" {
			version = v
		}
		if sha == "" {
			sha = s
		}
	}
	agentBin := filepath.Join(payload, "bin", "codelab-agent")
	if err := os.MkdirAll(filepath.Dir(agentBin), 0o755); err != nil {
		return err
	}
	start := time.Now()
	if err := o.BuildAgent(ctx, AgentBuild{Repo: repo, Out: agentBin, Version: version, Commit: sha, Stderr: o.Stderr}); err != nil {
		return err
	}
	log.Info("built codelab-agent", "version", version, "commit", sha, "duration", time.Since(start).Round(time.Millisecond))

	builds := make([]*ImageBuild, 0, len(imgs))
	for _, im := range imgs {
		inputs, err := Inputs(repo, im.Family, agentBin, arts)
		if err != nil {
			return err
		}
		builds = append(builds, &ImageBuild{Image: im, Inputs: inputs, Fingerprint: images.Fingerprint(inputs)})
	}
	snaps, err := images.List(ctx, api)
	if err != nil {
		return err
	}
	var todo []*ImageBuild
	for _, b := range builds {
		if s, ok := images.FindFingerprint(snaps, b.Image.Family, b.Fingerprint); ok {
			b.Existing = &s
			if !o.Force {
				fmt.Fprintf(o.Stdout, "%s: up to date: snapshot %s (id %d) has fingerprint %s; skipping (--force rebuilds)\n",
					b.Image.Family, s.Name, s.ID, b.Fingerprint)
				continue
			}
			fmt.Fprintf(o.Stdout, "%s: snapshot %s (id %d) has fingerprint %s; rebuilding (--force)\n",
				b.Image.Family, s.Name, s.ID, b.Fingerprint)
		}
		todo = append(todo, b)
	}
	if len(todo) == 0 {
		return nil
	}

	cache := &artifacts.Cache{Log: log, Client: o.DownloadClient}
	if cache.Dir, err = o.cacheDir(); err != nil {
		return err
	}
	if err := cache.Stage(ctx, arts, payload); err != nil {
		return err
	}
	if err := stageRepoFiles(repo, payload); err != nil {
		return err
	}
	if err := artifacts.WriteChecksums(payload); err != nil {
		return err
	}

	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	stamp := now().UTC()
	lines := packer.NewLines(o.Stderr)
	run := func(b *ImageBuild) {
		b.Err = o.buildImage(ctx, api, runner, pv, lines, repo, work, payload, b, stamp, version, sha)
	}
	if o.Debug {
		for _, b := range todo {
			run(b)
		}
	} else {
		var wg sync.WaitGroup
		for _, b := range todo {
			wg.Go(func() { run(b) })
		}
		wg.Wait()
	}
	var errs []error
	for _, b := range todo {
		if b.Err != nil {
			fmt.Fprintf(o.Stdout, "%s: FAILED: %v\n", b.Image.Family, b.Err)
			errs = append(errs, fmt.Errorf("%s: %w", b.Image.Family, b.Err))
			continue
		}
		fmt.Fprintf(o.Stdout, "%s: built %s (id %d, regions %s), fingerprint %s, agent %s, git %s\n",
			b.Image.Family, b.Name, b.Result.SnapshotID, strings.Join(b.Result.Regions, ","), b.Fingerprint, version, sha)
	}
	if o.Debug {
		fmt.Fprintf(o.Stdout, "debug: Packer's working folder (temporary SSH key) kept in %s\n", work)
	}
	if len(errs) > 0 {
		return fmt.Errorf("build: %w", errors.Join(errs...))
	}
	return nil
}

func (o *BuildOptions) buildImage(ctx context.Context, api images.API, runner *packer.Runner, pv packer.Version,
	lines *packer.Lines, repo, work, payload string, b *ImageBuild, stamp time.Time, version, sha string) (err error) {
	out := lines.Prefixed(b.Image.Family + " | ")
	defer out.Close()
	dir, err := stageTemplate(repo, b.Image.Family, pv)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := initPlugins(ctx, runner, pv, dir, out); err != nil {
		return err
	}
	buildID := b.Image.Family + "-" + stamp.Format("20060102-150405") + "-" + randomHex(3)
	snapshotTime := stamp.Format("2006-01-02-1504")
	b.Name = images.SnapshotName(b.Image.Family, stamp)
	args := packerVars(repo, o.apiURL(), payload, map[string]string{
		"region":        o.Region,
		"snapshot_time": snapshotTime,
		"build_id":      buildID,
		"agent_version": version,
		"git_sha":       sha,
		"fingerprint":   b.Fingerprint,
	})
	workDir := filepath.Join(work, b.Image.Family)
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}
	defer func() {
		if cerr := o.cleanupLeftovers(ctx, api, out, buildID, err != nil); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	start := time.Now()
	fmt.Fprintf(out, "packer build %s (build id %s, snapshot %s)\n", b.Image.Family, buildID, b.Name)
	b.Result, err = runner.Build(ctx, packer.BuildRequest{
		Dir: dir, Args: args, Debug: o.Debug, Stdin: o.Stdin, WorkDir: workDir, Out: out,
	})
	o.logger().Info("packer build", "image", b.Image.Family, "duration", time.Since(start).Round(time.Second), "err", err)
	if err != nil {
		return err
	}
	tags := images.Tags(b.Image.Family, b.Fingerprint, version, sha)
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := api.TagImage(tctx, b.Result.SnapshotID, tags); err != nil {
		return fmt.Errorf("snapshot %d was built but could not be tagged (tag it by hand with %s): %w",
			b.Result.SnapshotID, strings.Join(tags, " "), err)
	}
	fmt.Fprintf(out, "tagged snapshot %d: %s\n", b.Result.SnapshotID, strings.Join(tags, " "))
	return nil
}

// cleanupLeftovers deletes droplets Packer left behind (found by the build's tag) and,
// after a failure, names Packer's temporary SSH keys that still exist. It runs even when
// ctx is cancelled.
func (o *BuildOptions) cleanupLeftovers(ctx context.Context, api images.API, out io.Writer, buildID string, failed bool) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	tag := "codelab-build:" + buildID
	ds, err := api.ListDropletsByTag(cctx, tag)
	if err != nil {
		return fmt.Errorf("check for leftover build droplets: %w; delete droplets tagged %s by hand", err, tag)
	}
	var errs []error
	for _, d := range ds {
		if err := api.DeleteDroplet(cctx, d.ID); err != nil {
			errs = append(errs, fmt.Errorf("droplet %s (id %d) is left over; delete it by hand: %w", d.Name, d.ID, err))
			continue
		}
		fmt.Fprintf(out, "deleted leftover build droplet %s (id %d)\n", d.Name, d.ID)
	}
	if failed {
		keys, err := api.ListSSHKeys(cctx)
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
		if err := copyFile(u, filepath.Join(payload, "systemd", filepath.Base(u)), 0o644); err != nil {
			return fmt.Errorf("stage unit %s: %w", u, err)
		}
	}
	roles := filepath.Join(repo, "roles")
	return filepath.WalkDir(roles, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(roles, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(payload, "roles", rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := copyFile(p, dst, 0o644); err != nil {
			return fmt.Errorf("stage role file %s: %w", p, err)
		}
		return nil
	})
}

// Inputs lists every input of family's image with its SHA-256: the image's templates,
// the shared templates, scripts and versions file, the systemd units, the role files, the
// agent binary and each artifact's checksum. Paths are relative to the repository.
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
	for _, p := range append(units, filepath.Join(repo, artifacts.VersionsFile)) {
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
		in = append(in, images.Input{Path: "artifact/" + a.Name + "/" + a.Version, SHA256: a.SHA256})
	}
	return in, nil
}
