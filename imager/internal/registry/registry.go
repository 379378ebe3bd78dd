// Package registry resolves a role's application images to the repository digests the
// registry serves for them (go-containerregistry), and writes the file a service image
// carries to say which images are baked in: /etc/codelab/baked-images.json.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/codelab-app/infra/internal/baked"
)

// TokenEnv is the environment variable holding the registry token of a build (a
// DigitalOcean Container Registry token: user name and password alike, as the agent
// logs in with user_data's registry_token).
const TokenEnv = "CODELAB_REGISTRY_TOKEN"

// ErrNotFound is returned when the registry has no such image or tag.
var ErrNotFound = errors.New("not in the registry")

// ErrUnauthorized is returned when the registry refuses the (missing or given) token.
var ErrUnauthorized = errors.New("the registry refused the credentials")

// Image is one image reference and the digest the registry resolved it to.
type Image = baked.Image

// Resolver resolves tags to digests.
type Resolver struct {
	// Token authenticates to the registry; empty is anonymous.
	Token string
	// Transport carries the requests; nil is http.DefaultTransport.
	Transport http.RoundTripper
}

// Resolve returns the digest the registry serves for ref (a tagged reference). An
// unknown image or tag is ErrNotFound, a refused token ErrUnauthorized; both errors name
// the image and tag.
func (r *Resolver) Resolve(ctx context.Context, ref string) (Image, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: not a tagged image reference: %w", ref, err)
	}
	auth := authn.Anonymous
	if r.Token != "" {
		auth = &authn.Basic{Username: r.Token, Password: r.Token}
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	desc, err := remote.Head(tag, opts...)
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) {
			switch {
			case terr.StatusCode == http.StatusNotFound || hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
				return Image{}, fmt.Errorf("image %s tag %s: %w (%s)", tag.Context().Name(), tag.TagStr(), ErrNotFound, tag.RegistryStr())
			case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden || hasCode(terr, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
				how := "anonymously: set " + TokenEnv
				if r.Token != "" {
					how = "with the token in " + TokenEnv
				}
				return Image{}, fmt.Errorf("image %s tag %s: %w (%s, pulling %s)", tag.Context().Name(), tag.TagStr(), ErrUnauthorized, tag.RegistryStr(), how)
			}
		}
		return Image{}, fmt.Errorf("resolve image %s tag %s: %w", tag.Context().Name(), tag.TagStr(), err)
	}
	return Image{Ref: ref, Digest: desc.Digest.String()}, nil
}

func hasCode(e *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range e.Errors {
		if slices.Contains(codes, d.Code) {
			return true
		}
	}
	return false
}

// Repository is ref without its tag: "10.0.0.1:5000/codelab/api" for
// "10.0.0.1:5000/codelab/api:v1". The droplet pulls Repository(ref)@digest.
func Repository(ref string) (string, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("image %s: not a tagged image reference: %w", ref, err)
	}
	return tag.Context().Name(), nil
}
