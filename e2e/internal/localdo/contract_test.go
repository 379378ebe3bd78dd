package localdo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/digitalocean/godo/util"
)

// mayBeAbsentOrNull lists the fields of godo's types that the local DigitalOcean leaves
// null or out, each where DigitalOcean does the same. Every other field godo decodes
// must be present and not null.
var mayBeAbsentOrNull = map[string]string{
	"Droplet.kernel":                      "null for droplets with internally managed kernels (all of them today)",
	"Droplet.next_backup_window":          "null without backups",
	"Size.gpu_info":                       "null for sizes without a GPU",
	"Action.completed_at":                 "null while the action is in progress",
	"TaggedDropletsResources.last_tagged": "absent when no droplet carries the tag",
	"Links.pages":                         "absent on a list that fits one page",
	"Links.actions":                       "only on responses that start actions (droplet create)",
	"Pages.first":                         "only after the first page",
	"Pages.prev":                          "only after the first page",
	"Pages.next":                          "only before the last page",
	"Pages.last":                          "only before the last page",
	"Meta.page":                           "not sent by the droplet, image, key, region, size, snapshot, tag and action lists",
	"Meta.pages":                          "not sent by those lists either",
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkShape walks decoded JSON v against the godo type t and reports every field godo
// decodes that is missing or null (outside mayBeAbsentOrNull) and every value of the
// wrong JSON kind.
func checkShape(path string, v any, t reflect.Type, problems *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(format string, a ...any) { *problems = append(*problems, path+": "+fmt.Sprintf(format, a...)) }
	if v == nil {
		bad("null")
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if _, ok := v.(string); !ok {
			bad("want a string for %s, got %T", t, v)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object for %s, got %T", t, v)
			return
		}
		checkFields(path, m, t, t.Name(), problems)
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return
		}
		for i, x := range a {
			checkShape(fmt.Sprintf("%s[%d]", path, i), x, t.Elem(), problems)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			bad("want a string, got %T", v)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	case reflect.Int, reflect.Int64, reflect.Float64, reflect.Uint64:
		if _, ok := v.(float64); !ok {
			bad("want a number, got %T", v)
		}
	}
}

func checkFields(path string, m map[string]any, t reflect.Type, typeName string, problems *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			checkFields(path, m, f.Type, typeName, problems)
			continue
		}
		if name == "" {
			name = f.Name
		}
		owner := typeName
		x, ok := m[name]
		if _, allowed := mayBeAbsentOrNull[owner+"."+name]; allowed && (!ok || x == nil) {
			continue
		}
		if !ok {
			*problems = append(*problems, path+"."+name+": missing ("+owner+")")
			continue
		}
		checkShape(path+"."+name, x, f.Type, problems)
	}
}

// contractCase is one request and the godo type its answer must fill.
type contractCase struct {
	method, path, body string
	status             int
	key                string       // the resource's key in the body; "" for 204
	typ                reflect.Type // the type of body[key]
	list               bool         // links and meta are required
	createLinks        bool         // links.actions must name the create action
}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// TestContractEveryRouteAnswersInGodosShape sends one request to every route the server
// implements and checks the answer against the godo type the client decodes it into.
func TestContractEveryRouteAnswersInGodosShape(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	key, _, err := f.do.Keys.Create(ctx, &godo.KeyCreateRequest{Name: "k", PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx3n3yHNDOVd0g4HvM7U0rQm1Jd0d3K+Ih6d9hP0f3T k"})
	if err != nil {
		t.Fatal(err)
	}
	// The droplets the cases read, snapshot and delete.
	d, _, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "keep", Region: "nyc3", Size: "s-1vcpu-2gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, Tags: []string{"codelab"}, Monitoring: true})
	if err != nil {
		t.Fatal(err)
	}
	snapAct, _, err := f.do.DropletActions.Snapshot(ctx, d.ID, "codelab-services-base-2026-01-31-1200")
	if err != nil {
		t.Fatal(err)
	}
	waitAction(t, f, d.ID, snapAct.ID)
	imgs, _, err := f.do.Images.ListUser(ctx, nil)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("snapshots %v %v", imgs, err)
	}
	img := imgs[0].ID
	if _, err := f.do.Tags.TagResources(ctx, "codelab", &godo.TagResourcesRequest{Resources: []godo.Resource{{ID: fmt.Sprint(img), Type: godo.ImageResourceType}}}); err != nil {
		t.Fatal(err)
	}
	xfer, _, err := f.do.ImageActions.Transfer(ctx, img, &godo.ActionRequest{"type": "transfer", "region": "fra1"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "gone", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, Tags: []string{"doomed"}})
	if err != nil {
		t.Fatal(err)
	}

	create := `{"name":"api-2","region":"nyc3","size":"s-1vcpu-2gb","image":"debian-12-x64","user_data":"#codelab v1 role=api","tags":["codelab"]}`
	cases := []contractCase{
		{"GET", "/v2/account", "", 200, "account", typeOf[godo.Account](), false, false},
		{"GET", "/v2/account/keys", "", 200, "ssh_keys", typeOf[[]godo.Key](), true, false},
		{"POST", "/v2/account/keys", `{"name":"k2","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx3n3yHNDOVd0g4HvM7U0rQm1Jd0d3K+Ih6d9hP0f3T k2"}`, 201, "ssh_key", typeOf[godo.Key](), false, false},
		{"GET", fmt.Sprint("/v2/account/keys/", key.ID), "", 200, "ssh_key", typeOf[godo.Key](), false, false},
		{"PUT", fmt.Sprint("/v2/account/keys/", key.ID), `{"name":"renamed"}`, 200, "ssh_key", typeOf[godo.Key](), false, false},
		{"GET", "/v2/regions", "", 200, "regions", typeOf[[]godo.Region](), true, false},
		{"GET", "/v2/sizes", "", 200, "sizes", typeOf[[]godo.Size](), true, false},
		{"GET", "/v2/droplets?per_page=1", "", 200, "droplets", typeOf[[]godo.Droplet](), true, false},
		{"POST", "/v2/droplets", create, 202, "droplet", typeOf[godo.Droplet](), false, true},
		{"GET", fmt.Sprint("/v2/droplets/", d.ID), "", 200, "droplet", typeOf[godo.Droplet](), false, false},
		{"GET", fmt.Sprintf("/v2/droplets/%d/snapshots", d.ID), "", 200, "snapshots", typeOf[[]godo.Image](), true, false},
		{"GET", fmt.Sprintf("/v2/droplets/%d/actions", d.ID), "", 200, "actions", typeOf[[]godo.Action](), true, false},
		{"POST", fmt.Sprintf("/v2/droplets/%d/actions", d.ID), `{"type":"power_on"}`, 201, "action", typeOf[godo.Action](), false, false},
		{"GET", fmt.Sprintf("/v2/droplets/%d/actions/%d", d.ID, snapAct.ID), "", 200, "action", typeOf[godo.Action](), false, false},
		{"GET", "/v2/actions", "", 200, "actions", typeOf[[]godo.Action](), true, false},
		{"GET", fmt.Sprint("/v2/actions/", snapAct.ID), "", 200, "action", typeOf[godo.Action](), false, false},
		{"GET", "/v2/images?private=true", "", 200, "images", typeOf[[]godo.Image](), true, false},
		{"GET", fmt.Sprint("/v2/images/", img), "", 200, "image", typeOf[godo.Image](), false, false},
		{"PUT", fmt.Sprint("/v2/images/", img), `{"description":"base"}`, 200, "image", typeOf[godo.Image](), false, false},
		{"POST", fmt.Sprintf("/v2/images/%d/actions", img), `{"type":"transfer","region":"sfo3"}`, 201, "action", typeOf[godo.Action](), false, false},
		{"GET", fmt.Sprintf("/v2/images/%d/actions/%d", img, xfer.ID), "", 200, "action", typeOf[godo.Action](), false, false},
		{"GET", "/v2/snapshots", "", 200, "snapshots", typeOf[[]godo.Snapshot](), true, false},
		{"GET", fmt.Sprint("/v2/snapshots/", img), "", 200, "snapshot", typeOf[godo.Snapshot](), false, false},
		{"GET", "/v2/tags", "", 200, "tags", typeOf[[]godo.Tag](), true, false},
		{"POST", "/v2/tags", `{"name":"fresh"}`, 201, "tag", typeOf[godo.Tag](), false, false},
		{"GET", "/v2/tags/codelab", "", 200, "tag", typeOf[godo.Tag](), false, false},
		{"POST", "/v2/tags/fresh/resources", fmt.Sprintf(`{"resources":[{"resource_id":"%d","resource_type":"droplet"}]}`, d.ID), 204, "", nil, false, false},
		{"DELETE", "/v2/tags/fresh/resources", fmt.Sprintf(`{"resources":[{"resource_id":"%d","resource_type":"droplet"}]}`, d.ID), 204, "", nil, false, false},
		{"DELETE", "/v2/tags/fresh", "", 204, "", nil, false, false},
		{"DELETE", "/v2/droplets?tag_name=doomed", "", 204, "", nil, false, false},
		{"DELETE", fmt.Sprint("/v2/account/keys/", key.ID), "", 204, "", nil, false, false},
		{"DELETE", fmt.Sprint("/v2/snapshots/", img), "", 204, "", nil, false, false},
		{"DELETE", fmt.Sprint("/v2/images/", 999999), "", 404, "", nil, false, false},
		{"DELETE", fmt.Sprint("/v2/droplets/", d.ID), "", 204, "", nil, false, false},
	}

	// Which route each case hits, by the server's own patterns.
	mux := http.NewServeMux()
	for _, p := range f.srv.Routes() {
		mux.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, "http://x"+tc.path, nil)
		_, pattern := mux.Handler(req)
		if pattern == "" {
			t.Fatalf("%s %s matches no route", tc.method, tc.path)
		}
		covered[pattern] = true

		name := tc.method + " " + tc.path
		status, raw := f.rawBytes(t, tc.method, tc.path, tc.body)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", name, status, tc.status, raw)
			continue
		}
		if tc.key == "" {
			continue
		}
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var problems []string
		checkShape(tc.key, body[tc.key], tc.typ, &problems)
		if tc.list {
			checkShape("links", body["links"], typeOf[godo.Links](), &problems)
			checkShape("meta", body["meta"], typeOf[godo.Meta](), &problems)
		}
		// godo's own decoding must take it too.
		dst := reflect.New(tc.typ).Interface()
		if b, err := json.Marshal(body[tc.key]); err != nil || json.Unmarshal(b, dst) != nil {
			problems = append(problems, fmt.Sprintf("does not decode into %s", tc.typ))
		}
		if tc.createLinks {
			var links godo.Links
			b, _ := json.Marshal(body["links"])
			_ = json.Unmarshal(b, &links)
			if len(links.Actions) != 1 || links.Actions[0].Rel != "create" || links.Actions[0].ID == 0 ||
				!strings.HasSuffix(links.Actions[0].HREF, fmt.Sprint("/v2/actions/", links.Actions[0].ID)) {
				problems = append(problems, fmt.Sprintf("links.actions must name the create action: %+v", links.Actions))
			}
		}
		for _, p := range problems {
			t.Errorf("%s: %s", name, p)
		}
	}
	var missing []string
	for _, p := range f.srv.Routes() {
		if !covered[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("routes without a contract case: %v", missing)
	}
}

// The contract check itself catches what it is there for.
func TestCheckShapeFindsMissingAndNullFields(t *testing.T) {
	var problems []string
	checkShape("droplet", map[string]any{"id": 1.0, "image": nil}, typeOf[godo.Droplet](), &problems)
	joined := strings.Join(problems, "\n")
	for _, want := range []string{"droplet.image: null", "droplet.size: missing", "droplet.networks: missing", "droplet.vpc_uuid: missing"} {
		if !strings.Contains(joined, want) {
			t.Errorf("checkShape did not report %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "droplet.kernel") {
		t.Errorf("kernel may be null or absent:\n%s", joined)
	}
	problems = nil
	checkShape("action", map[string]any{"id": "7"}, typeOf[godo.Action](), &problems)
	if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, "action.id: want a number") }) {
		t.Errorf("wrong kinds must be reported: %v", problems)
	}
}

func (f *fixture) rawBytes(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestGodoHelpersWaitOnTheLinkedActions drives the create through godo's own helper, as
// doctl's `droplet create --wait` does, and an image transfer through the action wait
// Packer's snapshot_regions uses.
func TestGodoHelpersWaitOnTheLinkedActions(t *testing.T) {
	f := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, resp, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "api-2", Region: "nyc3", Size: "s-1vcpu-2gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, UserData: "#codelab v1 role=api"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Links == nil || len(resp.Links.Actions) != 1 {
		t.Fatalf("create response links: %+v", resp.Links)
	}
	if err := util.WaitForActive(ctx, f.do, resp.Links.Actions[0].HREF); err != nil {
		t.Fatalf("util.WaitForActive: %v", err)
	}
	acts, _, err := f.do.Droplets.Actions(ctx, d.ID, nil)
	if err != nil || len(acts) != 1 || acts[0].Type != "create" || acts[0].Status != godo.ActionCompleted ||
		acts[0].ResourceID != d.ID || acts[0].RegionSlug != "nyc3" || acts[0].Region == nil || acts[0].CompletedAt == nil {
		t.Fatalf("the droplet's actions: %+v %v", acts, err)
	}
	if pub, err := d.PublicIPv4(); err != nil || pub == "" {
		t.Fatalf("public address %q %v", pub, err)
	}
	if d.Size == nil || d.Size.Slug != "s-1vcpu-2gb" || d.SizeSlug != "s-1vcpu-2gb" || d.Image == nil || d.VPCUUID == "" || len(d.Features) == 0 {
		t.Fatalf("droplet %+v", d)
	}

	snap, _, err := f.do.DropletActions.Snapshot(ctx, d.ID, "codelab-services-base-2026-02-01-0000")
	if err != nil {
		t.Fatal(err)
	}
	waitAction(t, f, d.ID, snap.ID)
	imgs, _, err := f.do.Images.ListUser(ctx, nil)
	if err != nil || len(imgs) != 1 || !slices.Equal(imgs[0].Regions, []string{"nyc3"}) {
		t.Fatalf("snapshot %+v %v", imgs, err)
	}
	for _, region := range []string{"fra1", "sfo3", "fra1"} {
		a, _, err := f.do.ImageActions.Transfer(ctx, imgs[0].ID, &godo.ActionRequest{"type": "transfer", "region": region})
		if err != nil {
			t.Fatal(err)
		}
		if a.Type != "transfer" || a.ResourceType != "image" || a.ResourceID != imgs[0].ID || a.RegionSlug != region {
			t.Fatalf("transfer action %+v", a)
		}
		for { // Packer's waitForImageState polls ImageActions.Get like this.
			got, _, err := f.do.ImageActions.Get(ctx, imgs[0].ID, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status == godo.ActionCompleted {
				break
			}
			if got.Status != godo.ActionInProgress || ctx.Err() != nil {
				t.Fatalf("transfer to %s: %s %v", region, got.Status, ctx.Err())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	im, _, err := f.do.Images.GetByID(ctx, imgs[0].ID)
	if err != nil || !slices.Equal(im.Regions, []string{"nyc3", "fra1", "sfo3"}) {
		t.Fatalf("regions after the transfers: %+v %v", im, err)
	}
	// A Terraform-style lookup by name in a region finds it in every listed region.
	priv, _, err := f.do.Images.ListUser(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil || len(priv) != 1 || !slices.Contains(priv[0].Regions, "sfo3") {
		t.Fatalf("private images %+v %v", priv, err)
	}
	for _, body := range []string{`{"type":"convert"}`, `{"type":"transfer","region":"mars1"}`} {
		if code, out := f.raw(t, "POST", fmt.Sprintf("/v2/images/%d/actions", im.ID), "x", body); code != 422 {
			t.Errorf("image action %s: %d %v", body, code, out)
		}
	}
	if code, _ := f.raw(t, "POST", "/v2/images/139000001/actions", "x", `{"type":"transfer","region":"fra1"}`); code != 422 {
		t.Errorf("transferring a distribution image: %d, want 422", code)
	}
}

func TestDuplicateNameCreatesAndWarns(t *testing.T) {
	f := setup(t)
	var logs bytes.Buffer
	f.srv.log = slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	var ids []int
	for range 2 {
		d, _, err := f.do.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "api-2", Region: "nyc3", Size: "s-1vcpu-2gb",
			Image: godo.DropletCreateImage{Slug: "debian-12-x64"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	ds, _, err := f.do.Droplets.ListByName(ctx, "api-2", nil)
	if err != nil || len(ds) != 2 {
		t.Fatalf("DigitalOcean makes a second droplet with the same name, so must we: %+v %v", ds, err)
	}
	sort.Ints(ids)
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "DUPLICATE") {
			line = l
		}
	}
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, fmt.Sprintf("existing=[%d]", ids[0])) ||
		!strings.Contains(line, fmt.Sprintf("new=%d", ids[1])) {
		t.Fatalf("want a warning naming both droplets, got %q in\n%s", line, logs.String())
	}
}
