package localdo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/digitalocean/godo"
)

// fakeRuntime records calls; every function field left nil fails the test loudly.
type fakeRuntime struct {
	t       *testing.T
	mu      sync.Mutex
	calls   []string
	running map[int]bool
	specs   map[int]droplets.Spec
	stopErr error
}

func newFake(t *testing.T) *fakeRuntime {
	return &fakeRuntime{t: t, running: map[int]bool{}, specs: map[int]droplets.Spec{}}
}

func (f *fakeRuntime) record(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeRuntime) Create(_ context.Context, spec droplets.Spec, _ droplets.Networks) (droplets.Instance, error) {
	f.record("create %d %s %s", spec.DropletID, spec.Image, spec.PublicIP)
	f.mu.Lock()
	f.specs[spec.DropletID] = spec
	f.mu.Unlock()
	return droplets.Instance{Container: fmt.Sprint("c", spec.DropletID), PublicMAC: "02:00:00:00:00:01", PrivateMAC: "02:00:00:00:00:02"}, nil
}

func (f *fakeRuntime) Start(_ context.Context, id int, target string) error {
	f.record("start %d %s", id, target)
	f.mu.Lock()
	f.running[id] = true
	f.mu.Unlock()
	return nil
}

func (f *fakeRuntime) RedirectMetadata(_ context.Context, id int, target string) error {
	f.record("redirect %d %s", id, target)
	return nil
}

func (f *fakeRuntime) Stop(_ context.Context, id int, graceful bool, _ time.Duration) error {
	f.record("stop %d graceful=%v", id, graceful)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running[id] = false
	return f.stopErr
}

func (f *fakeRuntime) Running(_ context.Context, id int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running[id], nil
}

func (f *fakeRuntime) Exists(_ context.Context, id int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.running[id]
	return ok
}

func (f *fakeRuntime) Commit(_ context.Context, dropletID, imageID int, ref string) (droplets.ImageInfo, error) {
	f.record("commit %d %d %s", dropletID, imageID, ref)
	return droplets.ImageInfo{Ref: ref, Size: 1_234_000_000}, nil
}

func (f *fakeRuntime) SnapshotRef(id int) string { return fmt.Sprintf("snap:%d", id) }

func (f *fakeRuntime) Image(_ context.Context, ref string) (droplets.ImageInfo, error) {
	if strings.Contains(ref, "missing") {
		return droplets.ImageInfo{}, fmt.Errorf("%s: %w", ref, droplets.ErrNoImage)
	}
	return droplets.ImageInfo{Ref: ref, Size: 1}, nil
}

func (f *fakeRuntime) RemoveImage(_ context.Context, ref string) error {
	f.record("rmi %s", ref)
	return nil
}

func (f *fakeRuntime) Remove(_ context.Context, id int) error {
	f.record("rm %d", id)
	f.mu.Lock()
	delete(f.running, id)
	f.mu.Unlock()
	return nil
}

func (f *fakeRuntime) has(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == call {
			return true
		}
	}
	return false
}

var testNets = droplets.Networks{
	Public:  droplets.Network{Name: "pub", Subnet: netip.MustParsePrefix("10.250.0.0/24"), Gateway: netip.MustParseAddr("10.250.0.1")},
	Private: droplets.Network{Name: "vpc", Subnet: netip.MustParsePrefix("10.251.0.0/24"), Gateway: netip.MustParseAddr("10.251.0.1")},
}

type fixture struct {
	srv  *Server
	fake *fakeRuntime
	http *httptest.Server
	do   *godo.Client
	dir  string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{fake: newFake(t), dir: t.TempDir()}
	var err error
	f.srv, err = New(Config{Runtime: f.fake, Networks: testNets, StateDir: f.dir, MetadataTarget: "10.250.0.1:9999",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.srv.Handler())
	t.Cleanup(func() { f.http.Close(); f.srv.Close() })
	f.do = godo.NewFromToken("test-token")
	f.do.BaseURL, _ = f.do.BaseURL.Parse(f.http.URL + "/")
	return f
}

func (f *fixture) raw(t *testing.T, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, b)
		}
	}
	return resp.StatusCode, out
}

func TestErrorsFollowTheAPIShape(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		id                              string
	}{
		{"no token", "GET", "/v2/account", "", "", 401, "unauthorized"},
		{"unknown route", "GET", "/v2/floating_ips", "x", "", 404, "not_found"},
		{"wrong method", "PATCH", "/v2/droplets", "x", "", 404, "not_found"},
		{"missing droplet", "GET", "/v2/droplets/42", "x", "", 404, "not_found"},
		{"unknown field", "POST", "/v2/droplets", "x", `{"name":"a","region":"nyc3","size":"s-1vcpu-1gb","image":"debian-12-x64","bogus":1}`, 422, "unprocessable_entity"},
		{"unsupported option", "POST", "/v2/droplets", "x", `{"name":"a","region":"nyc3","size":"s-1vcpu-1gb","image":"debian-12-x64","volumes":["v"]}`, 422, "unprocessable_entity"},
		{"unknown image", "POST", "/v2/droplets", "x", `{"name":"a","region":"nyc3","size":"s-1vcpu-1gb","image":"ubuntu-99"}`, 422, "unprocessable_entity"},
		{"unknown size", "POST", "/v2/droplets", "x", `{"name":"a","region":"nyc3","size":"huge","image":"debian-12-x64"}`, 422, "unprocessable_entity"},
		{"unknown query", "GET", "/v2/droplets?color=red", "x", "", 422, "unprocessable_entity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := f.raw(t, tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || body["id"] != tc.id || body["message"] == "" {
				t.Fatalf("got %d %v, want %d id=%s with a message", status, body, tc.status, tc.id)
			}
		})
	}
	missing, err := New(Config{Runtime: f.fake, Networks: testNets, BaseImages: []BaseImage{{ID: 7, Slug: "debian-12-x64", Ref: "missing:latest"}},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(missing.Handler())
	defer hs.Close()
	req, _ := http.NewRequest("POST", hs.URL+"/v2/droplets", strings.NewReader(`{"name":"a","region":"nyc3","size":"s-1vcpu-1gb","image":"debian-12-x64"}`))
	req.Header.Set("Authorization", "Bearer x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 422 || !strings.Contains(string(body), "make deps") {
		t.Fatalf("a missing base image: %d %s", resp.StatusCode, body)
	}
	if code, _ := f.raw(t, "GET", "/v2/account", "x", ""); code != 200 {
		t.Fatalf("any non-empty token is accepted: got %d", code)
	}
}

func TestPackerFlowThroughGodo(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	key, _, err := f.do.Keys.Create(ctx, &godo.KeyCreateRequest{Name: "packer-1", PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx3n3yHNDOVd0g4HvM7U0rQm1Jd0d3K+Ih6d9hP0f3T packer"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(key.Fingerprint, ":") {
		t.Fatalf("fingerprint %q", key.Fingerprint)
	}
	d, _, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{
		Name: "packer-x", Region: "nyc3", Size: "s-2vcpu-4gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"},
		SSHKeys: []godo.DropletCreateSSHKey{{ID: key.ID}}, UserData: "#codelab v1 role=api", Tags: []string{"codelab-imager"},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, _, err = f.do.Droplets.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := d.PublicIPv4()
	priv, _ := d.PrivateIPv4()
	if d.Status != "active" || pub != "10.250.0.10" || priv != "10.251.0.10" || d.Image.Slug != "debian-12-x64" {
		t.Fatalf("droplet %+v (public %s private %s)", d, pub, priv)
	}
	spec := f.fake.specs[d.ID]
	var ak string
	for _, fl := range spec.Files {
		if fl.Path == "/root/.ssh/authorized_keys" {
			ak = string(fl.Data)
		}
	}
	if !strings.Contains(ak, "AAAAC3NzaC1lZDI1NTE5AAAAIHx3n3yHNDOVd0g4HvM7U0rQm1Jd0d3K") || len(spec.Files) < 5 {
		t.Fatalf("files for the droplet: authorized_keys %q, %d files (want host keys too)", ak, len(spec.Files))
	}
	if !f.fake.has(fmt.Sprintf("start %d 10.250.0.1:9999", d.ID)) {
		t.Fatalf("droplet not started with the metadata target: %v", f.fake.calls)
	}

	act, _, err := f.do.DropletActions.Shutdown(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitAction(t, f, d.ID, act.ID)
	if d, _, _ = f.do.Droplets.Get(ctx, d.ID); d.Status != "off" || d.Locked {
		t.Fatalf("after shutdown: status %s locked %v", d.Status, d.Locked)
	}
	act, _, err = f.do.DropletActions.Snapshot(ctx, d.ID, "codelab-services-base-2026-01-31-1200")
	if err != nil {
		t.Fatal(err)
	}
	waitAction(t, f, d.ID, act.ID)
	snaps, _, err := f.do.Droplets.Snapshots(ctx, d.ID, nil)
	if err != nil || len(snaps) != 1 || snaps[0].Name != "codelab-services-base-2026-01-31-1200" || snaps[0].Type != "snapshot" || snaps[0].SizeGigaBytes != 1.24 {
		t.Fatalf("droplet snapshots %+v %v", snaps, err)
	}
	if _, err := f.do.Droplets.Delete(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.do.Keys.DeleteByID(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if !f.fake.has(fmt.Sprintf("rm %d", d.ID)) {
		t.Fatalf("droplet container not removed: %v", f.fake.calls)
	}

	// What the imager does next: list, tag, delete.
	imgs, _, err := f.do.Images.ListUser(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil || len(imgs) != 1 {
		t.Fatalf("ListUser %+v %v", imgs, err)
	}
	if _, _, err := f.do.Tags.Create(ctx, &godo.TagCreateRequest{Name: "codelab-fp:abc"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.do.Tags.TagResources(ctx, "codelab-fp:abc", &godo.TagResourcesRequest{
		Resources: []godo.Resource{{ID: fmt.Sprint(imgs[0].ID), Type: godo.ImageResourceType}}}); err != nil {
		t.Fatal(err)
	}
	im, _, err := f.do.Images.GetByID(ctx, imgs[0].ID)
	if err != nil || len(im.Tags) != 1 || im.Tags[0] != "codelab-fp:abc" {
		t.Fatalf("tagged image %+v %v", im, err)
	}
	if _, err := f.do.Images.Delete(ctx, im.ID); err != nil {
		t.Fatal(err)
	}
	if !f.fake.has(fmt.Sprintf("rmi snap:%d", im.ID)) {
		t.Fatalf("snapshot image not removed: %v", f.fake.calls)
	}
	if imgs, _, _ := f.do.Images.ListUser(ctx, nil); len(imgs) != 0 {
		t.Fatalf("after delete: %+v", imgs)
	}
}

func waitAction(t *testing.T, f *fixture, dropletID, actionID int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		a, _, err := f.do.DropletActions.Get(context.Background(), dropletID, actionID)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status == godo.ActionCompleted {
			return
		}
		if a.Status != godo.ActionInProgress || time.Now().After(deadline) {
			t.Fatalf("action %d: %s", actionID, a.Status)
		}
	}
}

func TestPagingWalksEveryPage(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for i := range 5 {
		if _, _, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: fmt.Sprint("d", i), Region: "nyc3",
			Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, Tags: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	opt := &godo.ListOptions{Page: 1, PerPage: 2}
	for {
		ds, resp, err := f.do.Droplets.ListByTag(ctx, "t", opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			names = append(names, d.Name)
		}
		if resp.Meta == nil || resp.Meta.Total != 5 {
			t.Fatalf("meta %+v", resp.Meta)
		}
		if resp.Links.IsLastPage() {
			break
		}
		cur, err := resp.Links.CurrentPage()
		if err != nil || cur != opt.Page {
			t.Fatalf("current page %d (%v), asked %d", cur, err, opt.Page)
		}
		opt.Page = cur + 1
	}
	if strings.Join(names, ",") != "d0,d1,d2,d3,d4" {
		t.Fatalf("pages gave %v", names)
	}
}

func TestActionsLockAndConflict(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	d, _, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "x", Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}})
	if err != nil {
		t.Fatal(err)
	}
	f.fake.stopErr = errors.New("container would not stop")
	a, _, err := f.do.DropletActions.PowerOff(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _, err := f.do.Actions.Get(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == "errored" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a failing power_off must end errored, is %s", got.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := f.raw(t, "POST", fmt.Sprintf("/v2/droplets/%d/actions", d.ID), "x", `{"type":"rebuild","image":1}`); code != 422 {
		t.Fatalf("unimplemented action: %d %v", code, body)
	}
	if code, body := f.raw(t, "POST", fmt.Sprintf("/v2/droplets/%d/actions", d.ID), "x", `{"type":"resize"}`); code != 422 || !strings.Contains(body["message"].(string), "resize") {
		t.Fatalf("unimplemented action: %d %v", code, body)
	}
}

func TestStateSurvivesARestart(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	d, _, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "keep", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, UserData: "#codelab v1 role=web"})
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := New(Config{Runtime: f.fake, Networks: testNets, StateDir: f.dir, MetadataTarget: "10.250.0.1:7777",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if err := srv2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.fake.has(fmt.Sprintf("redirect %d 10.250.0.1:7777", d.ID)) {
		t.Fatalf("running droplet's metadata redirect not renewed: %v", f.fake.calls)
	}
	if got := srv2.st.Droplets[d.ID]; got == nil || got.UserData != "#codelab v1 role=web" || got.Status != "active" {
		t.Fatalf("restored droplet %+v", got)
	}
}

func TestMetadataPerDroplet(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	var ids []int
	for _, name := range []string{"api-1", "web-1"} {
		d, _, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: name, Region: "fra1", Size: "s-1vcpu-1gb",
			Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, UserData: "#codelab v1 role=" + name, Tags: []string{"codelab-" + name}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	h := f.srv.MetadataHandler()
	get := func(remote, path string) (int, string) {
		req := httptest.NewRequest("GET", "http://169.254.169.254"+path, nil)
		req.RemoteAddr = remote + ":40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	for _, tc := range []struct{ remote, path, want string }{
		{"10.250.0.11", "/metadata/v1/hostname", "web-1"},
		{"10.251.0.10", "/metadata/v1/hostname", "api-1"},
		{"10.250.0.10", "/metadata/v1/id", fmt.Sprint(ids[0])},
		{"10.250.0.10", "/metadata/v1/user-data", "#codelab v1 role=api-1"},
		{"10.250.0.11", "/metadata/v1/region", "fra1"},
		{"10.250.0.11", "/metadata/v1/tags/", "codelab-web-1"},
		{"10.250.0.11", "/metadata/v1/interfaces/private/0/ipv4/address", "10.251.0.11"},
		{"10.250.0.11", "/metadata/v1/interfaces/public/0/ipv4/gateway", "10.250.0.1"},
		{"10.250.0.11", "/metadata/v1/interfaces/private/0/ipv4/netmask", "255.255.255.0"},
		{"10.250.0.11", "/metadata/v1/interfaces/", "private/\npublic/"},
	} {
		code, body := get(tc.remote, tc.path)
		if code != 200 || body != tc.want {
			t.Errorf("%s from %s: %d %q, want %q", tc.path, tc.remote, code, body, tc.want)
		}
	}
	code, body := get("10.250.0.11", "/metadata/v1.json")
	var doc struct {
		DropletID  int    `json:"droplet_id"`
		UserData   string `json:"user_data"`
		Interfaces struct {
			Private []struct {
				IPv4 struct {
					IPAddress string `json:"ip_address"`
				} `json:"ipv4"`
			} `json:"private"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(body), &doc); code != 200 || err != nil || doc.DropletID != ids[1] ||
		doc.UserData != "#codelab v1 role=web-1" || doc.Interfaces.Private[0].IPv4.IPAddress != "10.251.0.11" {
		t.Fatalf("v1.json: %d %v %+v", code, err, doc)
	}
	if code, _ := get("10.250.0.99", "/metadata/v1.json"); code != 404 {
		t.Fatalf("unknown source address got %d", code)
	}
}

// A read-only token reads everything and writes nothing: every write answers 403 in
// DigitalOcean's error shape, the account unchanged; a full token still writes.
func TestReadOnlyTokenMayOnlyRead(t *testing.T) {
	fake := newFake(t)
	srv, err := New(Config{Runtime: fake, Networks: testNets, MetadataTarget: "10.250.0.1:9999",
		Token: "rw", ReadOnlyTokens: []string{"ro"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	f := &fixture{srv: srv, fake: fake, http: hs}
	img, err := srv.AddSnapshot(Snapshot{Name: "codelab-services-base-2026-11-01-0000", Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v2/account", "/v2/images?private=true", "/v2/droplets", fmt.Sprintf("/v2/images/%d", img)} {
		if code, body := f.raw(t, "GET", path, "ro", ""); code != 200 {
			t.Errorf("GET %s with the read-only token: %d %v", path, code, body)
		}
	}
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/v2/tags", `{"name":"codelab-imager"}`},
		{"POST", "/v2/droplets", `{"name":"a","region":"nyc3","size":"s-1vcpu-1gb","image":"debian-12-x64"}`},
		{"POST", "/v2/tags/codelab-x/resources", fmt.Sprintf(`{"resources":[{"resource_id":"%d","resource_type":"image"}]}`, img)},
		{"POST", fmt.Sprintf("/v2/images/%d/actions", img), `{"type":"transfer","region":"fra1"}`},
		{"PUT", fmt.Sprintf("/v2/images/%d", img), `{"name":"renamed"}`},
		{"DELETE", fmt.Sprintf("/v2/images/%d", img), ""},
	} {
		code, body := f.raw(t, w.method, w.path, "ro", w.body)
		if code != 403 || body["id"] != "forbidden" || body["message"] != "You do not have access for the attempted action." {
			t.Errorf("%s %s with the read-only token: %d %v, want 403 forbidden", w.method, w.path, code, body)
		}
	}
	_, im := f.raw(t, "GET", fmt.Sprintf("/v2/images/%d", img), "rw", "")
	image, _ := im["image"].(map[string]any)
	if image["name"] != "codelab-services-base-2026-11-01-0000" || fmt.Sprint(image["regions"]) != "[nyc3]" || fmt.Sprint(image["tags"]) != "[]" {
		t.Errorf("a refused write changed the image: %v", image)
	}
	if _, ds := f.raw(t, "GET", "/v2/droplets", "rw", ""); fmt.Sprint(ds["droplets"]) != "[]" {
		t.Errorf("a refused write created a droplet: %v", ds)
	}
	if code, body := f.raw(t, "GET", "/v2/account", "other", ""); code != 401 {
		t.Errorf("an unknown token: %d %v, want 401", code, body)
	}
	if code, body := f.raw(t, "POST", "/v2/tags", "rw", `{"name":"codelab-imager"}`); code != 201 {
		t.Errorf("the full token cannot write: %d %v", code, body)
	}
}
