package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/codelab-app/infra/agent/internal/retry"
)

// API is the part of the Docker Engine API this package uses.
type API interface {
	Ping(ctx context.Context) (types.Ping, error)
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error)
	DistributionInspect(ctx context.Context, ref, encodedAuth string) (registry.DistributionInspect, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error)
	Close() error
}

// NewClient connects to dockerd (DOCKER_HOST or the local socket),
// negotiating the API version with the daemon (Debian's 20.10 speaks 1.41).
func NewClient() (*client.Client, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return c, nil
}

// Pull results.
const (
	PullPulling = "pulling"
	PullPulled  = "pulled"
	PullPresent = "present" // already here at the registry's digest
	// PullBaked: baked into the droplet's image at the digest the image
	// records for user_data's version=; no registry was contacted.
	PullBaked  = "baked"
	PullFailed = "failed"
)

// Progress is one image's pull progress.
type Progress struct {
	Ref     string
	Result  string
	Digest  string
	Current int64 // bytes downloaded so far
	Total   int64 // bytes to download, as far as known
	Err     error
	Took    time.Duration
}

// Puller pulls images.
type Puller struct {
	API   API
	Creds Credentials
	// Retry bounds each image's attempts; default 1s doubling to 8s, 4
	// attempts.
	Retry retry.Policy
	// OnProgress, when set, is called (from several goroutines, never at
	// once) as pulls advance.
	OnProgress func(Progress)
	Log        *slog.Logger
}

// PullError lists the images that could not be pulled.
type PullError struct {
	Failed []Progress
}

func (e *PullError) Error() string {
	var parts []string
	for _, p := range e.Failed {
		parts = append(parts, fmt.Sprintf("%s: %v", p.Ref, p.Err))
	}
	return fmt.Sprintf("pull %d image(s): %s", len(e.Failed), strings.Join(parts, "; "))
}

// Hint is the command to reproduce the first failure.
func (e *PullError) Hint() string {
	if len(e.Failed) == 0 {
		return ""
	}
	return "docker pull " + e.Failed[0].Ref
}

// Transient reports whether every failure may clear up by itself (the
// registry unreachable or failing), as opposed to a missing image or
// refused credentials, which no retry fixes.
func (e *PullError) Transient() bool {
	for _, p := range e.Failed {
		if p.Err == nil || permanentPull(p.Err) {
			return false
		}
	}
	return len(e.Failed) > 0
}

// PullAll pulls every image concurrently. An image already present at the
// registry's digest is not pulled again. It returns every image's final
// progress and a *PullError naming those that failed.
func (p *Puller) PullAll(ctx context.Context, refs []string) ([]Progress, error) {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = make([]Progress, len(refs))
	)
	report := func(pr Progress) {
		if p.OnProgress == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		p.OnProgress(pr)
	}
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = p.pullOne(ctx, ref, report)
			report(out[i])
		}()
	}
	wg.Wait()
	var perr PullError
	for _, pr := range out {
		if pr.Err != nil {
			perr.Failed = append(perr.Failed, pr)
		}
	}
	if len(perr.Failed) > 0 {
		return out, &perr
	}
	return out, nil
}

func (p *Puller) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

func (p *Puller) pullOne(ctx context.Context, ref string, report func(Progress)) Progress {
	start := time.Now()
	pr := Progress{Ref: ref, Result: PullPulling}
	auth := p.Creds.EncodedAuth(ref)
	local, lerr := p.API.ImageInspect(ctx, ref)
	if lerr == nil {
		remote, rerr := p.API.DistributionInspect(ctx, ref, auth)
		switch {
		case rerr == nil && hasDigest(local.RepoDigests, ref, string(remote.Descriptor.Digest)):
			pr.Result, pr.Digest, pr.Took = PullPresent, string(remote.Descriptor.Digest), time.Since(start)
			p.log().Info("image present at the registry's digest: not pulled", slog.String("image", ref), slog.String("digest", pr.Digest))
			return pr
		case rerr != nil:
			// The registry is unreachable but the image is here: a reboot
			// must not fail because the registry is down.
			pr.Result, pr.Digest, pr.Took = PullPresent, repoDigest(local.RepoDigests, ref), time.Since(start)
			p.log().Warn("cannot reach the registry to compare digests; using the local image",
				slog.String("image", ref), slog.String("err", rerr.Error()))
			return pr
		}
	} else if !errdefs.IsNotFound(lerr) {
		pr.Result, pr.Err, pr.Took = PullFailed, fmt.Errorf("inspect local image: %w", lerr), time.Since(start)
		return pr
	}
	pol := p.Retry
	if pol.Initial == 0 {
		pol.Initial, pol.Max = time.Second, 8*time.Second
	}
	if pol.Attempts == 0 {
		pol.Attempts = 4
	}
	layers := map[string][2]int64{}
	err := retry.Do(ctx, pol, func(ctx context.Context) error {
		err := p.pullStream(ctx, ref, auth, func(id string, cur, total int64) {
			if cur < 0 { // layer done: count it whole
				l := layers[id]
				cur, total = l[1], l[1]
			}
			layers[id] = [2]int64{cur, total}
			pr.Current, pr.Total = 0, 0
			for _, l := range layers {
				pr.Current += l[0]
				pr.Total += l[1]
			}
			report(pr)
		})
		if err != nil {
			p.log().Warn("pull attempt failed", slog.String("image", ref), slog.String("err", err.Error()))
			if permanentPull(err) {
				return retry.Permanent(err)
			}
		}
		return err
	})
	pr.Took = time.Since(start)
	if err != nil {
		pr.Result, pr.Err = PullFailed, err
		return pr
	}
	if img, err := p.API.ImageInspect(ctx, ref); err == nil {
		pr.Digest = repoDigest(img.RepoDigests, ref)
	}
	pr.Result = PullPulled
	p.log().Info("image pulled", slog.String("image", ref), slog.String("digest", pr.Digest),
		slog.Int64("bytes", pr.Current), slog.Duration("took", pr.Took))
	return pr
}

func (p *Puller) pullStream(ctx context.Context, ref, auth string, progress func(id string, cur, total int64)) error {
	rc, err := p.API.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read pull progress: %w", err)
		}
		if m.Error != nil {
			return m.Error
		}
		switch m.Status {
		case "Downloading":
			if m.Progress != nil {
				progress(m.ID, m.Progress.Current, m.Progress.Total)
			}
		case "Download complete", "Pull complete", "Already exists":
			// Keep the layer's total as its current.
			progress(m.ID, -1, -1)
		}
	}
}

func permanentPull(err error) bool {
	if errdefs.IsNotFound(err) || errdefs.IsUnauthorized(err) || errdefs.IsForbidden(err) || errdefs.IsInvalidParameter(err) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"manifest unknown", "not found", "unauthorized", "denied", "invalid reference"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// hasDigest reports whether the local image's RepoDigests (which dockerd
// writes in short form, "neo4j@sha256:...") hold digest for ref's
// repository, however ref names it.
func hasDigest(repoDigests []string, ref, digest string) bool {
	if digest == "" {
		return false
	}
	repo := Repository(ref)
	for _, d := range repoDigests {
		if r, dg, ok := splitRepoDigest(d); ok && r == repo && dg == digest {
			return true
		}
	}
	return false
}

// repoDigest is the digest of ref's repository in RepoDigests, else the
// first one's.
func repoDigest(repoDigests []string, ref string) string {
	repo := Repository(ref)
	for _, d := range repoDigests {
		if r, dg, ok := splitRepoDigest(d); ok && r == repo {
			return dg
		}
	}
	if len(repoDigests) > 0 {
		if _, dg, ok := strings.Cut(repoDigests[0], "@"); ok {
			return dg
		}
	}
	return ""
}

// splitRepoDigest splits a RepoDigests entry into its fully qualified
// repository and its digest.
func splitRepoDigest(s string) (repo, digest string, ok bool) {
	name, digest, ok := strings.Cut(s, "@")
	if !ok {
		return "", "", false
	}
	return Repository(name), digest, true
}
