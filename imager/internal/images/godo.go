package images

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/oauth2"
)

// DefaultAPIURL is production's DigitalOcean API.
const DefaultAPIURL = "https://api.digitalocean.com/"

// ErrUnauthorized means DigitalOcean rejected the API token.
var ErrUnauthorized = errors.New("DigitalOcean rejected the API token (401 Unauthorized); check DIGITALOCEAN_API_TOKEN")

// Godo is API over the DigitalOcean API through godo.
type Godo struct {
	c *godo.Client
}

// NewGodo returns a client for the API at apiURL authenticated with token. httpClient may
// be nil.
func NewGodo(token, apiURL string, httpClient *http.Client) (*Godo, error) {
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/"
	}
	ctx := context.Background()
	if httpClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, httpClient)
	}
	hc := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))
	c, err := godo.New(hc, godo.SetBaseURL(apiURL), godo.SetUserAgent("codelab-imager"))
	if err != nil {
		return nil, fmt.Errorf("DigitalOcean client for %s: %w", apiURL, err)
	}
	return &Godo{c: c}, nil
}

// wrap turns a godo error into one line: ErrUnauthorized for a rejected token.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		if er.Response.StatusCode == http.StatusUnauthorized {
			return ErrUnauthorized
		}
		msg := er.Message
		if msg == "" {
			msg = http.StatusText(er.Response.StatusCode)
		}
		if req := er.Response.Request; req != nil {
			return fmt.Errorf("%s: DigitalOcean API %s %s: %d %s", what, req.Method, req.URL.Path, er.Response.StatusCode, msg)
		}
		return fmt.Errorf("%s: DigitalOcean API: %d %s", what, er.Response.StatusCode, msg)
	}
	return fmt.Errorf("%s: %w", what, err)
}

const perPage = 200

// all walks every page of a list call.
func all(ctx context.Context, what string, page func(opt *godo.ListOptions) (*godo.Response, error)) error {
	opt := &godo.ListOptions{Page: 1, PerPage: perPage}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		resp, err := page(opt)
		if err != nil {
			return wrap(what, err)
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return nil
		}
		cur, err := resp.Links.CurrentPage()
		if err != nil {
			return fmt.Errorf("%s: read pagination links: %w", what, err)
		}
		if cur < opt.Page {
			return fmt.Errorf("%s: pagination went backwards (page %d after %d)", what, cur, opt.Page)
		}
		opt.Page = cur + 1
	}
}

// CheckToken implements API.
func (g *Godo) CheckToken(ctx context.Context) error {
	_, _, err := g.c.Account.Get(ctx)
	return wrap("check API token", err)
}

// ErrReadOnly means the token may read but not write.
var ErrReadOnly = errors.New("the DigitalOcean API token has no write scope (403 on a write); a build creates a droplet, a snapshot and tags: use a token with read and write scope")

// CheckWrite implements API: it creates the codelab-imager tag, which every build's
// droplet carries anyway.
func (g *Godo) CheckWrite(ctx context.Context) error {
	_, resp, err := g.c.Tags.Create(ctx, &godo.TagCreateRequest{Name: "codelab-imager"})
	if resp != nil && resp.StatusCode == http.StatusForbidden {
		return ErrReadOnly
	}
	return wrap("check the token's write scope", err)
}

// ImageRegions implements API.
func (g *Godo) ImageRegions(ctx context.Context, id int) ([]string, error) {
	im, _, err := g.c.Images.GetByID(ctx, id)
	if err != nil {
		return nil, wrap(fmt.Sprintf("get image %d", id), err)
	}
	return im.Regions, nil
}

// ListSnapshots implements API.
func (g *Godo) ListSnapshots(ctx context.Context) ([]Snapshot, error) {
	var out []Snapshot
	err := all(ctx, "list snapshots", func(opt *godo.ListOptions) (*godo.Response, error) {
		imgs, resp, err := g.c.Images.ListUser(ctx, opt)
		for _, im := range imgs {
			if !strings.HasPrefix(im.Name, NamePrefix) || (im.Type != "" && im.Type != "snapshot") {
				continue
			}
			created, _ := time.Parse(time.RFC3339, im.Created)
			out = append(out, Snapshot{
				ID: im.ID, Name: im.Name, Created: created, SizeGB: im.SizeGigaBytes,
				Regions: im.Regions, Tags: im.Tags,
			})
		}
		return resp, err
	})
	return out, err
}

func droplets(ds []godo.Droplet) []Droplet {
	out := make([]Droplet, 0, len(ds))
	for _, d := range ds {
		x := Droplet{ID: d.ID, Name: d.Name}
		if d.Image != nil {
			x.ImageID = d.Image.ID
		}
		out = append(out, x)
	}
	return out
}

// ListDroplets implements API.
func (g *Godo) ListDroplets(ctx context.Context) ([]Droplet, error) {
	var out []Droplet
	err := all(ctx, "list droplets", func(opt *godo.ListOptions) (*godo.Response, error) {
		ds, resp, err := g.c.Droplets.List(ctx, opt)
		out = append(out, droplets(ds)...)
		return resp, err
	})
	return out, err
}

// ListDropletsByTag implements API.
func (g *Godo) ListDropletsByTag(ctx context.Context, tag string) ([]Droplet, error) {
	var out []Droplet
	err := all(ctx, "list droplets tagged "+tag, func(opt *godo.ListOptions) (*godo.Response, error) {
		ds, resp, err := g.c.Droplets.ListByTag(ctx, tag, opt)
		out = append(out, droplets(ds)...)
		return resp, err
	})
	return out, err
}

// DeleteDroplet implements API.
func (g *Godo) DeleteDroplet(ctx context.Context, id int) error {
	_, err := g.c.Droplets.Delete(ctx, id)
	return wrap(fmt.Sprintf("delete droplet %d", id), err)
}

// DeleteImage implements API.
func (g *Godo) DeleteImage(ctx context.Context, id int) error {
	_, err := g.c.Images.Delete(ctx, id)
	return wrap(fmt.Sprintf("delete snapshot %d", id), err)
}

// TagImage implements API: creates each tag (idempotent) and tags the image with it.
func (g *Godo) TagImage(ctx context.Context, id int, tags []string) error {
	for _, t := range tags {
		if _, _, err := g.c.Tags.Create(ctx, &godo.TagCreateRequest{Name: t}); err != nil {
			return wrap("create tag "+t, err)
		}
		_, err := g.c.Tags.TagResources(ctx, t, &godo.TagResourcesRequest{
			Resources: []godo.Resource{{ID: strconv.Itoa(id), Type: godo.ImageResourceType}},
		})
		if err != nil {
			return wrap(fmt.Sprintf("tag snapshot %d with %s", id, t), err)
		}
	}
	return nil
}

// ListSSHKeys implements API.
func (g *Godo) ListSSHKeys(ctx context.Context) ([]SSHKey, error) {
	var out []SSHKey
	err := all(ctx, "list SSH keys", func(opt *godo.ListOptions) (*godo.Response, error) {
		ks, resp, err := g.c.Keys.List(ctx, opt)
		for _, k := range ks {
			out = append(out, SSHKey{ID: k.ID, Name: k.Name})
		}
		return resp, err
	})
	return out, err
}
