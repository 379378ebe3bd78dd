package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/errdefs"
)

// BakedSchemaVersion is the newest baked-images file format this agent
// reads.
const BakedSchemaVersion = 1

// Baked is the record the imager writes into a per-service image
// (/etc/codelab/baked-images.json): the role's images it pulled at build
// time, each with its repository (manifest) digest, and the user_data
// registry= and version= they were resolved from.
type Baked struct {
	SchemaVersion int          `json:"schemaVersion"`
	Role          string       `json:"role"`
	Version       string       `json:"version"`
	Registry      string       `json:"registry"`
	Images        []BakedImage `json:"images"`
}

// BakedImage is one baked image: the reference exactly as the role's
// rendered Compose file names it, and its repository digest.
type BakedImage struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// BakedError says why a baked-images file cannot be used.
type BakedError struct {
	Field string // the bad part: "json", "schemaVersion", "images[1].digest"...
	Err   error
}

func (e *BakedError) Error() string {
	if e.Field == "json" {
		return "does not parse: " + e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}
func (e *BakedError) Unwrap() error { return e.Err }

// ParseBaked reads a baked-images file. A file that does not parse, has a
// schemaVersion this agent does not read or lacks a field is a
// *BakedError naming the bad part.
func ParseBaked(b []byte) (Baked, error) {
	var v Baked
	if err := json.Unmarshal(b, &v); err != nil {
		return Baked{}, &BakedError{Field: "json", Err: err}
	}
	if v.SchemaVersion < 1 || v.SchemaVersion > BakedSchemaVersion {
		return Baked{}, &BakedError{Field: "schemaVersion", Err: fmt.Errorf("%d; this agent reads 1 to %d", v.SchemaVersion, BakedSchemaVersion)}
	}
	for _, f := range []struct{ name, v string }{{"role", v.Role}, {"version", v.Version}, {"registry", v.Registry}} {
		if f.v == "" {
			return Baked{}, &BakedError{Field: f.name, Err: errors.New("missing")}
		}
	}
	if len(v.Images) == 0 {
		return Baked{}, &BakedError{Field: "images", Err: errors.New("empty")}
	}
	for i, im := range v.Images {
		if im.Ref == "" {
			return Baked{}, &BakedError{Field: fmt.Sprintf("images[%d].ref", i), Err: errors.New("missing")}
		}
		if !validDigest(im.Digest) {
			return Baked{}, &BakedError{Field: fmt.Sprintf("images[%d].digest", i), Err: fmt.Errorf("%q is not a sha256:<64 hex> digest", im.Digest)}
		}
	}
	return v, nil
}

func validDigest(d string) bool {
	const prefix = "sha256:"
	if len(d) != len(prefix)+64 || d[:len(prefix)] != prefix {
		return false
	}
	for _, c := range d[len(prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Digest returns the baked digest of ref, as the Compose file names it.
func (b Baked) Digest(ref string) (string, bool) {
	for _, im := range b.Images {
		if im.Ref == ref {
			return im.Digest, true
		}
	}
	return "", false
}

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
func (p *Puller) UseBaked(ctx context.Context, refs []string, b Baked) ([]Progress, error) {
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
