// Package images manages the codelab snapshots on DigitalOcean: listing them with the
// droplets that use them, the fingerprint of a build's inputs, and retention.
package images

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"time"
)

// NamePrefix starts the name of every snapshot the imager builds.
const NamePrefix = "codelab-"

// Tag prefixes stored on a snapshot (DigitalOcean tags allow letters, digits, ':', '-'
// and '_', at most 255 characters).
const (
	TagFingerprint = "codelab-fp:"
	TagAgent       = "codelab-agent:"
	TagGit         = "codelab-git:"
	TagFamily      = "codelab-image:"
	// TagPackage records a package version apt installed: codelab-pkg:<name>:<version>.
	TagPackage = "codelab-pkg:"
	// TagLocalArtifacts marks a --local-artifacts build (stand-ins, a test apt key):
	// such an image can never pass for a production one.
	TagLocalArtifacts = "codelab-local-artifacts"
	// Service images (codelab-<role>-base): the services base's fingerprint they were
	// built on, the application version they bake, and each baked image's digest as
	// codelab-app-image:<name>:sha256:<hex>.
	TagBaseFingerprint = "codelab-base-fp:"
	TagAppVersion      = "codelab-app-version:"
	TagAppImage        = "codelab-app-image:"
)

// Snapshot is one codelab snapshot.
type Snapshot struct {
	ID           int       `json:"id"`
	Name         string    `json:"name"`
	Family       string    `json:"family"`
	Created      time.Time `json:"created"`
	SizeGB       float64   `json:"sizeGigabytes"`
	Regions      []string  `json:"regions"`
	Tags         []string  `json:"tags"`
	Fingerprint  string    `json:"fingerprint,omitempty"`
	AgentVersion string    `json:"agentVersion,omitempty"`
	GitSHA       string    `json:"gitSha,omitempty"`
	// Packages are the apt package versions the build installed (from TagPackage tags;
	// characters tags cannot hold are '_').
	Packages map[string]string `json:"packages,omitempty"`
	// LocalArtifacts is true for a --local-artifacts build.
	LocalArtifacts bool `json:"localArtifacts,omitempty"`
	// Service images: the services base fingerprint, the application version and the
	// digest of each baked image, by repository name (from their tags).
	BaseFingerprint string            `json:"baseFingerprint,omitempty"`
	AppVersion      string            `json:"appVersion,omitempty"`
	AppImages       map[string]string `json:"appImages,omitempty"`
	UsedBy          []Droplet         `json:"usedBy"`
}

// InUse says whether a live droplet was created from the snapshot.
func (s Snapshot) InUse() bool { return len(s.UsedBy) > 0 }

// Droplet is the part of a droplet the imager cares about.
type Droplet struct {
	ID      int    `json:"id"`
	Name    string `json:"name"`
	ImageID int    `json:"-"`
}

// SSHKey is an account SSH key.
type SSHKey struct {
	ID   int
	Name string
}

var nameRE = regexp.MustCompile(`^codelab-([a-z0-9][a-z0-9-]*)-(\d{4}-\d{2}-\d{2}-\d{4})$`)

// Family returns the image family of a snapshot name: "services-base" for
// "codelab-services-base-2026-01-31-1200". Names that do not follow the pattern have no
// family and are never deleted by retention.
func Family(name string) string {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return m[1]
}

// SnapshotName is the name of a snapshot of family built at t (UTC).
func SnapshotName(family string, t time.Time) string {
	return NamePrefix + family + "-" + t.UTC().Format("2006-01-02-1504")
}

// FromTags fills the fingerprint, agent version and git SHA from the snapshot's tags.
func (s *Snapshot) FromTags() {
	for _, t := range s.Tags {
		switch {
		case strings.HasPrefix(t, TagFingerprint):
			s.Fingerprint = strings.TrimPrefix(t, TagFingerprint)
		case strings.HasPrefix(t, TagAgent):
			s.AgentVersion = strings.TrimPrefix(t, TagAgent)
		case strings.HasPrefix(t, TagGit):
			s.GitSHA = strings.TrimPrefix(t, TagGit)
		case strings.HasPrefix(t, TagPackage):
			if name, v, ok := strings.Cut(strings.TrimPrefix(t, TagPackage), ":"); ok {
				if s.Packages == nil {
					s.Packages = map[string]string{}
				}
				s.Packages[name] = v
			}
		case t == TagLocalArtifacts:
			s.LocalArtifacts = true
		case strings.HasPrefix(t, TagBaseFingerprint):
			s.BaseFingerprint = strings.TrimPrefix(t, TagBaseFingerprint)
		case strings.HasPrefix(t, TagAppVersion):
			s.AppVersion = strings.TrimPrefix(t, TagAppVersion)
		case strings.HasPrefix(t, TagAppImage):
			if name, d, ok := strings.Cut(strings.TrimPrefix(t, TagAppImage), ":"); ok {
				if s.AppImages == nil {
					s.AppImages = map[string]string{}
				}
				s.AppImages[name] = d
			}
		}
	}
}

// API is the narrow part of the DigitalOcean API the imager uses.
type API interface {
	// CheckToken fails with ErrUnauthorized when the token is rejected.
	CheckToken(ctx context.Context) error
	// CheckWrite fails with ErrReadOnly when the token cannot write (no write scope),
	// through a write that changes nothing: creating the codelab-imager tag.
	CheckWrite(ctx context.Context) error
	// ListSnapshots returns every private snapshot whose name starts with NamePrefix.
	ListSnapshots(ctx context.Context) ([]Snapshot, error)
	// ImageRegions returns the regions an image is available in.
	ImageRegions(ctx context.Context, id int) ([]string, error)
	ListDroplets(ctx context.Context) ([]Droplet, error)
	ListDropletsByTag(ctx context.Context, tag string) ([]Droplet, error)
	DeleteDroplet(ctx context.Context, id int) error
	DeleteImage(ctx context.Context, id int) error
	TagImage(ctx context.Context, id int, tags []string) error
	ListSSHKeys(ctx context.Context) ([]SSHKey, error)
}

// List returns every codelab snapshot with the droplets created from it, newest first
// within each family, families in name order.
func List(ctx context.Context, api API) ([]Snapshot, error) {
	snaps, err := api.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	droplets, err := api.ListDroplets(ctx)
	if err != nil {
		return nil, err
	}
	users := map[int][]Droplet{}
	for _, d := range droplets {
		users[d.ImageID] = append(users[d.ImageID], d)
	}
	for i := range snaps {
		snaps[i].Family = Family(snaps[i].Name)
		snaps[i].FromTags()
		snaps[i].UsedBy = users[snaps[i].ID]
		if snaps[i].UsedBy == nil {
			snaps[i].UsedBy = []Droplet{}
		}
		if snaps[i].Tags == nil {
			snaps[i].Tags = []string{}
		}
		if snaps[i].Regions == nil {
			snaps[i].Regions = []string{}
		}
	}
	Sort(snaps)
	return snaps, nil
}

// Sort orders snapshots by family, then newest first (name breaks ties).
func Sort(snaps []Snapshot) {
	sort.SliceStable(snaps, func(i, j int) bool {
		a, b := snaps[i], snaps[j]
		if a.Family != b.Family {
			return a.Family < b.Family
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.After(b.Created)
		}
		return a.Name > b.Name
	})
}

// FindFingerprint returns the newest snapshot of family carrying fingerprint fp.
func FindFingerprint(snaps []Snapshot, family, fp string) (Snapshot, bool) {
	var found []Snapshot
	for _, s := range snaps {
		if s.Family == family && s.Fingerprint == fp {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		return Snapshot{}, false
	}
	Sort(found)
	return found[0], true
}
