package fleet

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/digitalocean/godo"
)

// Where the newest image of a family came from.
const (
	FromDigitalOcean = "digitalocean"
	FromRecords      = "records"
)

// Image is one snapshot.
type Image struct {
	Name    string
	Created time.Time
}

// Images knows the newest snapshot of every family.
type Images struct {
	Source string
	Err    string // why the API was not used, when it was not
	byName map[string]Image
	newest map[string]Image // by family
}

// imageName is codelab-<family>-YYYY-MM-DD-HHMM, the imager's snapshot
// name.
var imageName = regexp.MustCompile(`^(.+)-(\d{4}-\d{2}-\d{2}-\d{4})$`)

// ParseImageName splits a snapshot name into its family
// (codelab-services-base) and build time.
func ParseImageName(name string) (family string, built time.Time, ok bool) {
	m := imageName.FindStringSubmatch(name)
	if m == nil {
		return "", time.Time{}, false
	}
	t, err := time.Parse("2006-01-02-1504", m[2])
	if err != nil {
		return "", time.Time{}, false
	}
	return m[1], t, true
}

// NewImages indexes a list of snapshots by family; names that are not the
// imager's are ignored.
func NewImages(source string, list []Image) *Images {
	im := &Images{Source: source, byName: map[string]Image{}, newest: map[string]Image{}}
	for _, i := range list {
		fam, built, ok := ParseImageName(i.Name)
		if !ok {
			continue
		}
		if i.Created.IsZero() {
			i.Created = built
		}
		im.byName[i.Name] = i
		if n, ok := im.newest[fam]; !ok || i.Created.After(n.Created) || (i.Created.Equal(n.Created) && i.Name > n.Name) {
			im.newest[fam] = i
		}
	}
	return im
}

// NoImages is the fallback when the API cannot be asked: Build judges
// from the records and reports why.
func NoImages(why string) *Images { return &Images{Source: FromRecords, Err: why} }

// ImagesFromRecords is the fallback without an API token: the newest image
// of a family is the newest name among the records.
func ImagesFromRecords(recs []Record) *Images {
	var list []Image
	for _, r := range recs {
		if r.Image != "" {
			list = append(list, Image{Name: r.Image})
		}
	}
	return NewImages(FromRecords, list)
}

// judge fills a droplet's image age and stale mark.
func (im *Images) judge(d *Droplet) {
	if d.Image == "" {
		return
	}
	fam, built, ok := ParseImageName(d.Image)
	if !ok {
		return
	}
	if i, ok := im.byName[d.Image]; ok {
		built = i.Created
	}
	t := built
	d.ImageCreated = &t
	if n, ok := im.newest[fam]; ok && n.Name != d.Image && n.Created.After(built) {
		d.StaleImage, d.NewestImage = true, n.Name
	}
}

// ListDOImages lists the account's snapshots (private images) through the
// DigitalOcean API.
func ListDOImages(ctx context.Context, c *godo.Client) ([]Image, error) {
	var out []Image
	opt := &godo.ListOptions{PerPage: 200}
	for {
		page, resp, err := c.Images.ListUser(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("list snapshots on DigitalOcean: %w", err)
		}
		for _, i := range page {
			created, _ := time.Parse(time.RFC3339, i.Created)
			out = append(out, Image{Name: i.Name, Created: created})
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return out, nil
		}
		p, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, fmt.Errorf("list snapshots on DigitalOcean: %w", err)
		}
		opt.Page = p + 1
	}
}
