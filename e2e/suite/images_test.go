package suite

import (
	"context"
	"encoding/json"
	osexec "os/exec"
	"strings"
	"testing"

	"github.com/codelab-app/infra/e2e/internal/cluster"
)

// bakedFile is /etc/codelab/baked-images.json as a service image carries it.
type bakedFile struct {
	SchemaVersion int    `json:"schemaVersion"`
	Role          string `json:"role"`
	Version       string `json:"version"`
	Registry      string `json:"registry"`
	Images        []struct {
		Ref    string `json:"ref"`
		Digest string `json:"digest"`
	} `json:"images"`
}

// checkServiceImages: api and web run from their service images, which carry the
// role's image at the cluster's version, with the digest the e2e registry serves for
// it (the one the host pushed), tagged as the droplet's compose file names it; landing
// and sites run from the services base, which bakes nothing. No image keeps a registry
// login. It also logs each family's newest snapshot and its size (the Docker data
// included).
func checkServiceImages(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	snaps, err := c.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range cluster.Families {
		im, ok := snaps[fam]
		if !ok {
			t.Errorf("no %s snapshot", fam)
			continue
		}
		t.Logf("snapshot %s: %.2f GB", im.Name, im.SizeGigaBytes)
	}
	for _, n := range c.Nodes {
		exec := func(args ...string) (string, error) { return c.Docker.Exec(ctx, n.ID, args...) }
		name, err := exec("cat", "/etc/codelab/image")
		if err != nil || !strings.HasPrefix(name, "codelab-"+n.Image+"-") {
			t.Errorf("%s: /etc/codelab/image = %q (%v), want a codelab-%s- snapshot", n.Name, name, err, n.Image)
		}
		if _, err := exec("test", "!", "-e", "/root/.docker/config.json"); err != nil {
			t.Errorf("%s: a registry login is in the image", n.Name)
		}
		if n.Role != "api" && n.Role != "web" {
			if _, err := exec("test", "!", "-e", "/etc/codelab/baked-images.json"); err != nil {
				t.Errorf("%s (%s) has a baked-images.json", n.Name, n.Image)
			}
			continue
		}
		raw, err := exec("cat", "/etc/codelab/baked-images.json")
		if err != nil {
			t.Errorf("%s: %v", n.Name, err)
			continue
		}
		var b bakedFile
		if err := json.Unmarshal([]byte(raw), &b); err != nil {
			t.Errorf("%s: baked-images.json: %v\n%s", n.Name, err, raw)
			continue
		}
		ref := c.Info.RegistryPull + "/" + n.Role + ":" + c.Opts.Version
		if b.SchemaVersion != 1 || b.Role != n.Role || b.Registry != c.Info.RegistryPull || b.Version != c.Opts.Version || len(b.Images) != 1 || b.Images[0].Ref != ref {
			t.Errorf("%s: baked-images.json does not match the cluster's user_data (registry=%s version=%s):\n%s", n.Name, c.Info.RegistryPull, c.Opts.Version, raw)
			continue
		}
		if mode, _ := exec("stat", "-c", "%a", "/etc/codelab/baked-images.json"); mode != "644" {
			t.Errorf("%s: baked-images.json mode %s", n.Name, mode)
		}
		// The digest the registry serves for the image the host pushed.
		pushed, err := osexec.CommandContext(ctx, "docker", "image", "inspect", "-f", `{{join .RepoDigests "\n"}}`, c.Info.RegistryPush+"/"+n.Role+":"+c.Opts.Version).Output()
		if err != nil || !strings.Contains(string(pushed), "@"+b.Images[0].Digest) {
			t.Errorf("%s: baked digest %s is not the pushed image's (%q, %v)", n.Name, b.Images[0].Digest, pushed, err)
		}
		repo := ref[:strings.LastIndex(ref, ":")]
		got, err := exec("docker", "image", "inspect", "-f", `{{join .RepoDigests " "}}`, ref)
		if err != nil || !strings.Contains(" "+got+" ", " "+repo+"@"+b.Images[0].Digest+" ") {
			t.Errorf("%s: the droplet's Docker has no %s with digest %s: %q %v", n.Name, ref, b.Images[0].Digest, got, err)
		}
	}
}
