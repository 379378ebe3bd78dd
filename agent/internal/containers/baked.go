package containers

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/errdefs"

	"github.com/codelab-app/infra/internal/baked"
)

// NotBakedError says which image keeps the baked images from being used.
type NotBakedError struct {
	Ref    string
	Reason string
}

func (e *NotBakedError) Error() string { return "image " + e.Ref + " " + e.Reason }

// UseBaked checks, with the local dockerd only, that every image of refs
// is listed in b and present here at its baked digest. When all are, it
// returns each one's progress as PullBaked and no registry is contacted
// at all; otherwise a *NotBakedError names the first image that is not
// (the caller then pulls as usual).
func (p *Puller) UseBaked(ctx context.Context, refs []string, b baked.Baked) ([]Progress, error) {
	out := make([]Progress, len(refs))
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Go(func() {
			start := time.Now()
			digest, ok := b.Digest(ref)
			if !ok {
				errs[i] = &NotBakedError{Ref: ref, Reason: "is not in the baked images"}
				return
			}
			local, err := p.API.ImageInspect(ctx, ref)
			switch {
			case errdefs.IsNotFound(err):
				errs[i] = &NotBakedError{Ref: ref, Reason: "is not present locally"}
				return
			case err != nil:
				errs[i] = fmt.Errorf("inspect local image %s: %w", ref, err)
				return
			case !hasDigest(local.RepoDigests, ref, digest):
				errs[i] = &NotBakedError{Ref: ref, Reason: "is not present locally at the baked digest " + digest}
				return
			}
			out[i] = Progress{Ref: ref, Result: PullBaked, Digest: digest, Took: time.Since(start)}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	for _, pr := range out {
		p.log().Info("image baked in at its digest: no registry contacted", slog.String("image", pr.Ref), slog.String("digest", pr.Digest))
		if p.OnProgress != nil {
			p.OnProgress(pr)
		}
	}
	return out, nil
}
