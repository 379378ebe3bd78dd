package cli_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/localdotest"
	"github.com/codelab-app/infra/imager/internal/cli"
	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/codelab-app/infra/internal/exitcode"
)

// doneWhenServer is a local DigitalOcean holding 7 services-base (ids 101-107) and 5
// neo4j-base (201-205) snapshots; droplet api-1 runs on the oldest services-base one
// (101) and, with web, web-1 on the newest (107). Page size 4 forces pagination. It
// returns api-1's droplet id.
func doneWhenServer(t *testing.T, web bool) (*localdotest.Server, int) {
	srv := localdotest.New(t, localdotest.Options{Token: "tok", PageSize: 4})
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range 7 {
		c := base.AddDate(0, 0, i)
		srv.AddSnapshot(localdotest.Snapshot{ID: 101 + i, Name: images.SnapshotName("services-base", c), Created: c,
			SizeGB: 3.1, Regions: []string{"nyc3"}, Tags: []string{"codelab-fp:fp" + string(rune('a'+i))}})
	}
	for i := range 5 {
		c := base.AddDate(0, 0, i).Add(time.Hour)
		srv.AddSnapshot(localdotest.Snapshot{ID: 201 + i, Name: images.SnapshotName("neo4j-base", c), Created: c, SizeGB: 4, Regions: []string{"nyc3", "sfo3"},
			Tags: []string{"codelab-pkg:docker-ce:5:24_0_7-1_debian_12_bookworm", "codelab-local-artifacts"}})
	}
	api1 := srv.CreateDroplet("api-1", 101)
	if web {
		srv.CreateDroplet("web-1", 107)
	}
	return srv, api1
}

func snapshotIDs(srv *localdotest.Server) []int {
	var ids []int
	for _, im := range srv.Snapshots() {
		ids = append(ids, im.ID)
	}
	return slices.Sorted(slices.Values(ids))
}

func TestCleanImagesDryRun(t *testing.T) {
	srv, api1 := doneWhenServer(t, false) // exactly one snapshot in use (the oldest services-base)
	g, out, _ := globals(t, env{"DIGITALOCEAN_API_TOKEN": "tok"})
	if err := run(t, g, "clean-images", "--dry-run", "--api-url", srv.URL); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	t.Logf("imager clean-images --dry-run:\n%s", s)
	for _, want := range []string{
		"plan: keep 7, delete 5 of 12 snapshot(s) (newest 3 per family plus those in use)",
		"dry run: nothing deleted",
		fmt.Sprintf("in use by droplet api-1 (%d)", api1),
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	keepLines, deleteLines := 0, 0
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "keep "):
			keepLines++
		case strings.HasPrefix(l, "delete "):
			deleteLines++
		}
	}
	if keepLines != 7 || deleteLines != 5 {
		t.Errorf("plan lines: keep %d delete %d, want 7 and 5:\n%s", keepLines, deleteLines, s)
	}
	if n := srv.Count("GET /v2/images"); n != 3 {
		t.Errorf("image pages = %d, want 3 (12 images, 4 per page)", n)
	}
	if srv.Count("DELETE") != 0 || len(srv.Snapshots()) != 12 {
		t.Fatalf("dry run deleted something: %v", srv.Requests())
	}
}

func TestCleanImagesDeletes(t *testing.T) {
	srv, _ := doneWhenServer(t, true)
	before := snapshotIDs(srv)
	g, out, _ := globals(t, env{"DIGITALOCEAN_TOKEN": "tok", "DIGITALOCEAN_API_URL": ""})
	g.APIURL = srv.URL
	if err := cli.RunClean(t.Context(), &cli.CleanOptions{Globals: g, Keep: 3}); err != nil {
		t.Fatal(err)
	}
	after := snapshotIDs(srv)
	got := slices.DeleteFunc(before, func(id int) bool { return slices.Contains(after, id) })
	if want := []int{102, 103, 104, 201, 202}; !slices.Equal(got, want) {
		t.Fatalf("deleted %v, want %v\n%s", got, want, out)
	}
	if strings.Contains(out.String(), "dry run") {
		t.Error("not a dry run")
	}
}

func TestCleanImagesJSONAndKeep(t *testing.T) {
	srv, _ := doneWhenServer(t, true)
	g, out, _ := globals(t, env{"DIGITALOCEAN_API_TOKEN": "tok", "DIGITALOCEAN_API_URL": srv.URL})
	if err := run(t, g, "clean-images", "--dry-run", "--json", "--keep", "5"); err != nil {
		t.Fatal(err)
	}
	var res cli.CleanOutput
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var del []int
	for _, d := range res.Plan {
		if d.Delete {
			del = append(del, d.Snapshot.ID)
		}
	}
	// keep 5: services-base keeps 107..103 and 101 (in use); deletes 102.
	if res.SchemaVersion != 1 || !res.DryRun || !slices.Equal(del, []int{102}) {
		t.Fatalf("plan = %+v, deletes %v", res, del)
	}

	err := run(t, g, "clean-images", "--keep", "0")
	if exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("--keep 0: %v, want a usage error", err)
	}
}

func TestListImages(t *testing.T) {
	srv, _ := doneWhenServer(t, true)
	g, out, _ := globals(t, env{"DIGITALOCEAN_API_TOKEN": "tok"})
	if err := run(t, g, "list-images", "--api-url", srv.URL); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 13 {
		t.Fatalf("%d lines, want header + 12:\n%s", len(lines), out)
	}
	for _, h := range []string{"ID", "NAME", "FAMILY", "CREATED", "SIZE", "REGIONS", "FINGERPRINT", "PACKAGES", "IN USE"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("header lacks %s: %q", h, lines[0])
		}
	}
	if !strings.Contains(out.String(), "yes (api-1)") || !strings.Contains(out.String(), "nyc3,sfo3") || !strings.Contains(out.String(), "fpg") {
		t.Errorf("table lacks use, regions or fingerprint:\n%s", out)
	}
	if !strings.Contains(out.String(), "docker-ce=5:24_0_7-1_debian_12_bookworm") || !strings.Contains(out.String(), "(local-artifacts)") {
		t.Errorf("table lacks the packages or the local-artifacts mark:\n%s", out)
	}

	out.Reset()
	if err := run(t, g, "list-images", "--json", "--api-url", srv.URL); err != nil {
		t.Fatal(err)
	}
	var res cli.ListOutput
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.SchemaVersion != 1 || len(res.Images) != 12 {
		t.Fatalf("json = %+v", res)
	}
	first := res.Images[0]
	if first.Family != "neo4j-base" || first.ID != 205 || len(first.Regions) != 2 || first.Packages["docker-ce"] == "" || !first.LocalArtifacts {
		t.Errorf("first image = %+v", first)
	}
	var used []int
	for _, im := range res.Images {
		if len(im.UsedBy) > 0 {
			used = append(used, im.ID)
		}
	}
	if !slices.Equal(used, []int{107, 101}) {
		t.Errorf("in use = %v, want [107 101]", used)
	}
}

func TestTokenErrorsAreOneLine(t *testing.T) {
	srv := localdotest.New(t, localdotest.Options{Token: "good"})
	for _, tc := range []struct {
		name string
		env  env
		want error
	}{
		{"missing", env{}, cli.ErrNoToken},
		{"rejected", env{"DIGITALOCEAN_API_TOKEN": "bad"}, images.ErrUnauthorized},
	} {
		for _, cmd := range [][]string{{"list-images"}, {"clean-images", "--dry-run"}, {"build", "all"}} {
			t.Run(tc.name+"/"+cmd[0], func(t *testing.T) {
				g, out, _ := globals(t, tc.env)
				g.Repo = fixtureRepo(t)
				err := run(t, g, append(cmd, "--api-url", srv.URL)...)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if strings.Contains(err.Error(), "\n") || out.Len() != 0 {
					t.Fatalf("want one line and no output, got %q and %q", err, out)
				}
				if strings.Contains(err.Error(), "bad") {
					t.Fatal("the token must not be printed")
				}
			})
		}
	}
}

// list-images and clean-images cover the six families: four snapshots of each, the
// oldest api-base in use; --keep 3 deletes the oldest of each family but that one. The
// service images' baked version (as a tag holds it) and digests show in the list.
func TestListAndCleanCoverEveryFamily(t *testing.T) {
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	base := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	fams := []string{"services-base", "neo4j-base", "api-base", "web-base", "landing-base", "sites-base"}
	oldest := map[string]int{}
	id := 300
	for f, fam := range fams {
		for i := range 4 {
			id++
			c := base.AddDate(0, 0, i).Add(time.Duration(f) * time.Minute)
			tags := []string{"codelab-fp:fp" + fmt.Sprint(id)}
			if fam != "services-base" && fam != "neo4j-base" {
				tags = append(tags, images.ServiceTags("basefp", "v1.2.3", map[string]string{strings.TrimSuffix(fam, "-base"): "sha256:0123456789abcdef0123"})...)
			}
			srv.AddSnapshot(localdotest.Snapshot{ID: id, Name: images.SnapshotName(fam, c), Created: c, Regions: []string{"nyc3"}, Tags: tags})
			if i == 0 {
				oldest[fam] = id
			}
		}
	}
	srv.CreateDroplet("api-1", oldest["api-base"])
	g, out, _ := globals(t, env{"DIGITALOCEAN_API_TOKEN": "tok"})
	if err := run(t, g, "list-images", "--api-url", srv.URL); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "BAKES") || !strings.Contains(out.String(), "v1_2_3 api@sha256:0123456789ab ") || strings.Count(out.String(), "v1_2_3 ") != 16 {
		t.Errorf("list lacks the baked images:\n%s", out)
	}
	out.Reset()
	if err := run(t, g, "clean-images", "--keep", "3", "--api-url", srv.URL); err != nil {
		t.Fatal(err)
	}
	left := map[int]bool{}
	for _, id := range snapshotIDs(srv) {
		left[id] = true
	}
	for _, fam := range fams {
		if want := fam == "api-base"; left[oldest[fam]] != want {
			t.Errorf("%s: oldest snapshot %d kept = %v, want %v (in use: only api-base's)", fam, oldest[fam], left[oldest[fam]], want)
		}
	}
	if len(left) != 6*3+1 {
		t.Errorf("%d snapshots left, want 19:\n%s", len(left), out)
	}
}
