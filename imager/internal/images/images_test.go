package images_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/localdotest"
	"github.com/codelab-app/infra/imager/internal/images"
)

func TestFamily(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"codelab-services-base-2026-01-31-1200", "services-base"},
		{"codelab-neo4j-base-2026-11-27-0905", "neo4j-base"},
		{"codelab-api-base-2024-02-01-0000", "api-base"},
		{"codelab-services-base-latest", ""},
		{"codelab-services-base-2026-01-31", ""},
		{"other-services-base-2026-01-31-1200", ""},
		{"codelab--2026-01-31-1200", ""},
	} {
		if got := images.Family(tc.name); got != tc.want {
			t.Errorf("Family(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSnapshotNameMatchesTerraformRegexAndFamily(t *testing.T) {
	n := images.SnapshotName("services-base", time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600)))
	if n != "codelab-services-base-2026-03-04-0406" {
		t.Fatalf("SnapshotName = %q, want UTC codelab-services-base-2026-03-04-0406", n)
	}
	if images.Family(n) != "services-base" {
		t.Fatalf("Family(%q) = %q", n, images.Family(n))
	}
}

func TestFingerprint(t *testing.T) {
	a := []images.Input{{"packer/a.pkr.hcl", "11"}, {"agent/codelab-agent", "22"}, {"roles/api/x", "33"}}
	b := []images.Input{a[2], a[0], a[1]}
	fa, fb := images.Fingerprint(a), images.Fingerprint(b)
	if fa != fb {
		t.Errorf("fingerprint depends on input order: %s vs %s", fa, fb)
	}
	if len(fa) != images.FingerprintLen {
		t.Errorf("len = %d, want %d", len(fa), images.FingerprintLen)
	}
	changed := slices.Clone(a)
	changed[1].SHA256 = "23"
	renamed := slices.Clone(a)
	renamed[0].Path = "packer/b.pkr.hcl"
	for name, in := range map[string][]images.Input{"content": changed, "path": renamed, "fewer": a[:2]} {
		if images.Fingerprint(in) == fa {
			t.Errorf("changing %s did not change the fingerprint", name)
		}
	}
}

func TestTags(t *testing.T) {
	tags := images.Tags("services-base", "0123abcd", "v1.2.3-4-gabc+dirty", "deadbeef",
		map[string]string{"docker-ce": "5:24.0.7-1~debian.12~bookworm", "containerd.io": "1.6.26-1"}, true)
	want := []string{"codelab-image:services-base", "codelab-fp:0123abcd", "codelab-agent:v1_2_3-4-gabc_dirty", "codelab-git:deadbeef",
		"codelab-pkg:containerd_io:1_6_26-1", "codelab-pkg:docker-ce:5:24_0_7-1_debian_12_bookworm", "codelab-local-artifacts"}
	if !slices.Equal(tags, want) {
		t.Fatalf("Tags = %q, want %q", tags, want)
	}
	s := images.Snapshot{Tags: tags}
	s.FromTags()
	if s.Fingerprint != "0123abcd" || s.AgentVersion != "v1_2_3-4-gabc_dirty" || s.GitSHA != "deadbeef" ||
		s.Packages["docker-ce"] != "5:24_0_7-1_debian_12_bookworm" || s.Packages["containerd_io"] != "1_6_26-1" || !s.LocalArtifacts {
		t.Fatalf("FromTags = %+v", s)
	}
}

func snap(id int, family string, day int, users ...string) images.Snapshot {
	s := images.Snapshot{ID: id, Family: family, Created: time.Date(2026, 1, day, 12, 0, 0, 0, time.UTC)}
	s.Name = images.SnapshotName(family, s.Created)
	for i, u := range users {
		s.UsedBy = append(s.UsedBy, images.Droplet{ID: 900 + i, Name: u})
	}
	return s
}

func TestPlan(t *testing.T) {
	odd := images.Snapshot{ID: 99, Name: "codelab-hand-made", Created: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		name       string
		snaps      []images.Snapshot
		keep       int
		wantDelete []int
	}{
		{"nothing", nil, 3, nil},
		{"fewer than keep", []images.Snapshot{snap(1, "services-base", 1), snap(2, "services-base", 2)}, 3, nil},
		{"oldest go", []images.Snapshot{snap(1, "services-base", 1), snap(2, "services-base", 2), snap(3, "services-base", 3), snap(4, "services-base", 4), snap(5, "services-base", 5)}, 3, []int{2, 1}},
		{"per family", []images.Snapshot{snap(1, "services-base", 1), snap(2, "services-base", 2), snap(3, "neo4j-base", 3), snap(4, "neo4j-base", 4)}, 1, []int{3, 1}},
		{"in use is kept", []images.Snapshot{snap(1, "services-base", 1, "api-1"), snap(2, "services-base", 2), snap(3, "services-base", 3)}, 1, []int{2}},
		{"unknown names kept", []images.Snapshot{odd, snap(1, "services-base", 1), snap(2, "services-base", 2)}, 1, []int{1}},
		{"keep 1 of in-use newest", []images.Snapshot{snap(1, "neo4j-base", 1), snap(2, "neo4j-base", 2, "neo4j-1")}, 1, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, d := range images.Plan(tc.snaps, tc.keep) {
				if d.Reason == "" {
					t.Errorf("snapshot %d has no reason", d.Snapshot.ID)
				}
				if d.Delete {
					got = append(got, d.Snapshot.ID)
				}
			}
			if !slices.Equal(got, tc.wantDelete) {
				t.Fatalf("deleted %v, want %v", got, tc.wantDelete)
			}
		})
	}
}

func TestPlanReasonNamesTheDroplet(t *testing.T) {
	plan := images.Plan([]images.Snapshot{snap(2, "services-base", 2), snap(1, "services-base", 1, "api-1")}, 1)
	if plan[1].Delete || !strings.Contains(plan[1].Reason, "api-1 (900)") {
		t.Fatalf("in-use decision = %+v", plan[1])
	}
}

func TestListPaginatesAndMarksUse(t *testing.T) {
	srv := localdotest.New(t, localdotest.Options{Token: "tok", PageSize: 2})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= 7; i++ {
		c := base.Add(time.Duration(i) * 24 * time.Hour)
		srv.AddSnapshot(localdotest.Snapshot{ID: i, Name: images.SnapshotName("services-base", c), Created: c, Regions: []string{"nyc3"}, SizeGB: 2.5})
	}
	srv.AddSnapshot(localdotest.Snapshot{ID: 50, Name: "ubuntu-custom", Created: base})
	api1 := srv.CreateDroplet("api-1", 3)
	web1 := srv.CreateDroplet("web-1", 3)
	srv.CreateDroplet("other", 139000001) // the Debian 12 distribution image
	api, err := images.NewGodo("tok", srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := images.List(context.Background(), api)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	if want := []int{7, 6, 5, 4, 3, 2, 1}; !slices.Equal(ids, want) {
		t.Fatalf("ids = %v, want %v (codelab only, newest first)", ids, want)
	}
	// 8 snapshots at 2 per page; the distribution image is not the account's.
	if n := srv.Count("GET /v2/images"); n != 4 {
		t.Errorf("image pages requested = %d, want 4: %v", n, srv.Requests())
	}
	if n := srv.Count("GET /v2/droplets"); n != 2 {
		t.Errorf("droplet pages requested = %d, want 2", n)
	}
	if got, want := fmt.Sprint(snaps[4].UsedBy), fmt.Sprintf("[{%d api-1 3} {%d web-1 3}]", api1, web1); got != want {
		t.Errorf("snapshot 3 used by %s, want %s", got, want)
	}
	if snaps[0].InUse() {
		t.Errorf("snapshot 7 should not be in use")
	}
}

func TestRejectedToken(t *testing.T) {
	srv := localdotest.New(t, localdotest.Options{Token: "good"})
	api, err := images.NewGodo("bad", srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := api.CheckToken(context.Background()); !errors.Is(err, images.ErrUnauthorized) {
		t.Fatalf("CheckToken = %v, want ErrUnauthorized", err)
	}
	if _, err := api.ListSnapshots(context.Background()); !errors.Is(err, images.ErrUnauthorized) {
		t.Fatalf("ListSnapshots = %v, want ErrUnauthorized", err)
	}
	if strings.Contains(images.ErrUnauthorized.Error(), "\n") {
		t.Fatal("the error must be one line")
	}
}

func TestTagImage(t *testing.T) {
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	srv.AddSnapshot(localdotest.Snapshot{ID: 42, Name: "codelab-services-base-2026-01-01-0000"})
	api, err := images.NewGodo("tok", srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	tags := []string{"codelab-fp:abc", "codelab-git:123"}
	if err := api.TagImage(context.Background(), 42, tags); err != nil {
		t.Fatal(err)
	}
	if got := srv.Image(42).Tags; !slices.Equal(got, tags) {
		t.Fatalf("tagged %v, want %v", got, tags)
	}
	if err := api.TagImage(context.Background(), 43, tags); err == nil || !strings.Contains(err.Error(), "tag snapshot 43") {
		t.Fatalf("tagging a missing snapshot: %v", err)
	}
}
