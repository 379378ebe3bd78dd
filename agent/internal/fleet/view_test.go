package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/internal/exitcode"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func rec(node, role, state string, mod ...func(*Record)) Record {
	r := Record{
		SchemaVersion: SchemaVersion, Node: node, Env: "prod", Role: role, DropletID: "1" + node[len(node)-1:],
		Image: "codelab-services-base-2026-11-27-0900", AgentVersion: "1.2.0 (abc)", State: state,
		Summary: "ready in 41.2s", BootStart: now.Add(-time.Hour), BootMS: 41200, PublishedAt: now.Add(-time.Hour),
	}
	for _, m := range mod {
		m(&r)
	}
	return r
}

func pair(t *testing.T, r Record) *api.KVPair {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return &api.KVPair{Key: Key(r.Env, r.Node), Value: b, Session: "s-" + r.Node}
}

func serf(node, status string) *api.HealthCheck {
	return &api.HealthCheck{Node: node, CheckID: "serfHealth", Name: "Serf Health Status", Status: status}
}

func check(node, name, status string) *api.HealthCheck {
	service, _, _ := strings.Cut(name, " ")
	return &api.HealthCheck{Node: node, CheckID: name, Name: name, Status: status, ServiceName: service}
}

func find(t *testing.T, v View, node string) Droplet {
	t.Helper()
	for _, d := range v.Droplets {
		if d.Node == node {
			return d
		}
	}
	t.Fatalf("no %s in %+v", node, v.Droplets)
	return Droplet{}
}

// fixture is a fleet with one droplet in every state.
func fixture(t *testing.T) Snapshot {
	released := pair(t, rec("landing-1", "landing", Ready))
	released.Session = ""
	return Snapshot{
		Pairs: api.KVPairs{
			pair(t, rec("api-1", "api", Ready)),
			pair(t, rec("web-1", "web", Ready)),
			released,
			pair(t, rec("sites-1", "sites", Booting, func(r *Record) { r.Summary = "pulling images 1/2" })),
			pair(t, rec("neo4j-1", "neo4j", Failed, func(r *Record) {
				r.Image = "codelab-neo4j-base-2026-11-20-0800"
				r.FailedStep, r.Reason, r.Summary = "compose-up", "neo4j unhealthy", "failed: compose up"
				r.AgentVersion = "1.1.0 (old)"
			})),
			pair(t, rec("neo4j-2", "neo4j", Ready, func(r *Record) { r.Image = "codelab-neo4j-base-2026-11-20-0800" })),
			{Key: Key("prod", "broken-1"), Value: []byte("{not json"), Session: "s"},
			{Key: Key("prod", "future-1"), Value: []byte(`{"schemaVersion":99,"state":"ready"}`), Session: "s"},
			{Key: Prefix + "prod/", Value: nil}, // a folder: not a record
		},
		Checks: api.HealthChecks{
			serf("api-1", api.HealthPassing), check("api-1", "api HTTP /healthz", api.HealthPassing),
			serf("web-1", api.HealthPassing), check("web-1", "web HTTP /healthz", api.HealthCritical),
			serf("landing-1", api.HealthCritical),
			serf("sites-1", api.HealthPassing),
			serf("neo4j-1", api.HealthPassing),
			serf("neo4j-2", api.HealthPassing), check("neo4j-2", "neo4j-monitor backup age", api.HealthCritical),
		},
	}
}

func TestBuildStates(t *testing.T) {
	v := Build(fixture(t), nil, Filter{}, now)
	want := map[string]string{
		"api-1": Ready, "web-1": Degraded, "landing-1": Unreachable, "sites-1": Booting,
		"neo4j-1": Failed, "neo4j-2": Ready, "broken-1": Unknown, "future-1": Unknown,
	}
	if len(v.Droplets) != len(want) {
		t.Fatalf("droplets = %d, want %d: %+v", len(v.Droplets), len(want), v.Droplets)
	}
	for node, st := range want {
		if got := find(t, v, node); got.State != st {
			t.Errorf("%s: state %s (%s), want %s", node, got.State, got.Summary, st)
		}
	}
	if v.Overall != Failed || v.ExitCode != exitcode.Failed {
		t.Errorf("overall %s exit %d, want failed 1", v.Overall, v.ExitCode)
	}
	if d := find(t, v, "web-1"); !strings.Contains(d.Summary, "web HTTP /healthz critical") {
		t.Errorf("degraded summary = %q", d.Summary)
	}
	// Another service's check on the node (the backup-age alert) is
	// reported without degrading the droplet.
	if d := find(t, v, "neo4j-2"); d.Summary != "ready in 41.2s; alerting: neo4j-monitor backup age critical" || len(d.FailingChecks) != 1 {
		t.Errorf("neo4j-2 = %+v", d)
	}
	if d := find(t, v, "neo4j-1"); d.Summary != "boot failed at compose-up: neo4j unhealthy" || !d.AgentDiffers {
		t.Errorf("neo4j-1 = %+v", d)
	}
	if d := find(t, v, "future-1"); !strings.Contains(d.Summary, "schemaVersion 99") {
		t.Errorf("newer schema summary = %q", d.Summary)
	}
	if d := find(t, v, "landing-1"); d.Held || !strings.Contains(d.Summary, "Consul marks the node failed") {
		t.Errorf("landing-1 = %+v", d)
	}
	if v.AgentMajority != "1.2.0 (abc)" {
		t.Errorf("majority = %q", v.AgentMajority)
	}
	if v.Summary != "8 droplets: 2 ready, 1 booting, 1 degraded, 2 unknown, 1 unreachable, 1 failed" {
		t.Errorf("summary = %q", v.Summary)
	}
}

// The worst state wins, and its exit code is the single-droplet one.
func TestWorstStateWins(t *testing.T) {
	for _, tc := range []struct {
		states []string
		want   string
		code   int
	}{
		{[]string{Ready, Ready}, Ready, exitcode.OK},
		{[]string{Ready, Booting}, Booting, exitcode.Booting},
		{[]string{Booting, Degraded}, Degraded, exitcode.Degraded},
		{[]string{Degraded, Unreachable}, Unreachable, exitcode.Failed},
		{[]string{Unreachable, Failed, Ready}, Failed, exitcode.Failed},
	} {
		var s Snapshot
		for i, st := range tc.states {
			node := string(rune('a'+i)) + "-1"
			r := rec(node, "api", Ready)
			s.Checks = append(s.Checks, serf(node, api.HealthPassing))
			switch st {
			case Degraded:
				s.Checks = append(s.Checks, check(node, "api HTTP", api.HealthWarning))
			case Unreachable:
				s.Checks[len(s.Checks)-1] = serf(node, api.HealthCritical)
			case Booting, Failed:
				r.State = st
			}
			s.Pairs = append(s.Pairs, pair(t, r))
		}
		v := Build(s, nil, Filter{}, now)
		if v.Overall != tc.want || v.ExitCode != tc.code {
			t.Errorf("%v: overall %s exit %d, want %s %d", tc.states, v.Overall, v.ExitCode, tc.want, tc.code)
		}
	}
}

func TestNodeMissingFromCatalogIsUnreachable(t *testing.T) {
	v := Build(Snapshot{Pairs: api.KVPairs{pair(t, rec("gone-1", "api", Ready))}}, nil, Filter{}, now)
	if d := v.Droplets[0]; d.State != Unreachable || !strings.Contains(d.Summary, "not in Consul's catalog") {
		t.Fatalf("%+v", d)
	}
}

// A record whose session ended, on a node Consul sees again, keeps its
// state and says the record is from before.
func TestReleasedRecordOnLiveNode(t *testing.T) {
	p := pair(t, rec("api-1", "api", Ready))
	p.Session = ""
	v := Build(Snapshot{Pairs: api.KVPairs{p}, Checks: api.HealthChecks{serf("api-1", api.HealthPassing)}}, nil, Filter{}, now)
	if d := v.Droplets[0]; d.State != Ready || !strings.Contains(d.Summary, "published before Consul last lost the node") {
		t.Fatalf("%+v", d)
	}
}

func TestFilters(t *testing.T) {
	s := fixture(t)
	staging := rec("api-9", "api", Ready, func(r *Record) { r.Env = "staging" })
	s.Pairs = append(s.Pairs, pair(t, staging))
	s.Checks = append(s.Checks, serf("api-9", api.HealthPassing))

	v := Build(s, nil, Filter{Role: "api"}, now)
	var nodes []string
	for _, d := range v.Droplets {
		nodes = append(nodes, d.Env+"/"+d.Node)
	}
	// Unreadable records are never dropped, whatever the role filter.
	if got := strings.Join(nodes, " "); got != "prod/api-1 prod/broken-1 prod/future-1 staging/api-9" {
		t.Errorf("--role api: %s", got)
	}
	v = Build(s, nil, Filter{Env: "staging"}, now)
	if len(v.Droplets) != 1 || v.Droplets[0].Node != "api-9" || v.Overall != Ready {
		t.Errorf("--env staging: %+v", v.Droplets)
	}
	v = Build(s, nil, Filter{Role: "nothing"}, now)
	if v.Overall != Unknown || v.ExitCode != exitcode.Failed {
		t.Errorf("nothing matched: overall %s exit %d", v.Overall, v.ExitCode)
	}
}

func TestStaleImageFromRecords(t *testing.T) {
	s := fixture(t)
	newer := rec("api-2", "api", Ready, func(r *Record) { r.Image = "codelab-services-base-2026-11-28-0930" })
	s.Pairs = append(s.Pairs, pair(t, newer))
	s.Checks = append(s.Checks, serf("api-2", api.HealthPassing))
	v := Build(s, nil, Filter{}, now)
	if v.ImagesFrom != FromRecords {
		t.Errorf("images from %s", v.ImagesFrom)
	}
	for _, node := range []string{"api-1", "web-1", "landing-1", "sites-1"} {
		if d := find(t, v, node); !d.StaleImage || d.NewestImage != newer.Image {
			t.Errorf("%s: stale %v newest %q", node, d.StaleImage, d.NewestImage)
		}
	}
	// The newest of its family, and the only neo4j image: not stale.
	for _, node := range []string{"api-2", "neo4j-1"} {
		if d := find(t, v, node); d.StaleImage {
			t.Errorf("%s is marked stale", node)
		}
	}
	if d := find(t, v, "api-1"); d.ImageCreated == nil || !d.ImageCreated.Equal(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("image created = %v", d.ImageCreated)
	}
}

func TestStaleImageFromAPI(t *testing.T) {
	created := time.Date(2026, 11, 27, 9, 1, 30, 0, time.UTC)
	imgs := NewImages(FromDigitalOcean, []Image{
		{Name: "codelab-services-base-2026-11-27-0900", Created: created},
		{Name: "codelab-services-base-2026-11-28-1100", Created: created.Add(26 * time.Hour)},
		{Name: "codelab-neo4j-base-2026-11-20-0800", Created: created.Add(-7 * 24 * time.Hour)},
		{Name: "someone-elses-image"},
	})
	v := Build(fixture(t), imgs, Filter{}, now)
	if v.ImagesFrom != FromDigitalOcean {
		t.Errorf("images from %s", v.ImagesFrom)
	}
	d := find(t, v, "api-1")
	if !d.StaleImage || d.NewestImage != "codelab-services-base-2026-11-28-1100" || !d.ImageCreated.Equal(created) {
		t.Errorf("api-1: %+v", d)
	}
	if d := find(t, v, "neo4j-1"); d.StaleImage {
		t.Errorf("neo4j-1 runs the newest neo4j image, marked stale")
	}
	// Without the API, the reason is kept and the records decide.
	v = Build(fixture(t), NoImages("no do_token"), Filter{}, now)
	if v.ImagesFrom != FromRecords || v.ImagesError != "no do_token" || find(t, v, "api-1").StaleImage {
		t.Errorf("fallback: from %s err %q", v.ImagesFrom, v.ImagesError)
	}
}

func TestMajorityTie(t *testing.T) {
	s := Snapshot{Checks: api.HealthChecks{serf("a-1", api.HealthPassing), serf("b-1", api.HealthPassing)}}
	s.Pairs = api.KVPairs{pair(t, rec("a-1", "api", Ready)), pair(t, rec("b-1", "api", Ready, func(r *Record) { r.AgentVersion = "2" }))}
	v := Build(s, nil, Filter{}, now)
	if v.AgentMajority != "" || v.Droplets[0].AgentDiffers || v.Droplets[1].AgentDiffers {
		t.Errorf("a tie marks nobody: %+v", v)
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in    string
		newer bool
		ok    bool
	}{
		{`{"schemaVersion":1,"state":"ready","node":"a"}`, false, true},
		{`{"schemaVersion":2,"state":"ready"}`, true, false},
		{`{"state":"ready"}`, false, false},
		{`{"schemaVersion":1}`, false, false},
		{`[]`, false, false},
		{``, false, false},
	} {
		_, err := Decode([]byte(tc.in))
		if (err == nil) != tc.ok || errors.Is(err, ErrNewerSchema) != tc.newer {
			t.Errorf("Decode(%s) = %v", tc.in, err)
		}
	}
}

func TestFromState(t *testing.T) {
	fin := now
	st := boot.State{
		Role: "api", DropletID: "42", Image: "codelab-services-base-2026-11-27-0900", AgentVersion: "v",
		Result: boot.BootFailed, Status: "failed: pull\nmore", Error: "boot failed", StartedAt: now.Add(-time.Minute),
		FinishedAt: &fin, DurationMS: 60000,
		Steps: []boot.StepState{
			{Name: "render", Result: boot.OK},
			{Name: "pull-images", Result: boot.Failed, Error: "pull api: " + strings.Repeat("x", 400) + "\nsecond line"},
			{Name: "compose-up", Result: boot.Blocked},
		},
		Images: []boot.ImageState{{Ref: "reg/api:1", Digest: "sha256:ab"}},
	}
	b := now
	r := FromState(st, "prod", "api-1", &b, now)
	if r.State != Failed || r.FailedStep != "pull-images" || len(r.Reason) != maxReason || strings.Contains(r.Reason, "second") {
		t.Errorf("failed step: %+v", r)
	}
	if r.Summary != "failed: pull" || r.BootMS != 60000 || r.Key() != "codelab/_fleet/prod/api-1" || r.LastBackup == nil {
		t.Errorf("record: %+v", r)
	}
	if len(r.AppImages) != 1 || r.AppImages[0] != (AppImage{Ref: "reg/api:1", Digest: "sha256:ab"}) {
		t.Errorf("app images: %+v", r.AppImages)
	}
	// A boot still running reports how long it has run so far.
	st.Result, st.FinishedAt, st.DurationMS, st.Steps = boot.BootRunning, nil, 0, nil
	if r := FromState(st, "prod", "api-1", nil, now); r.BootMS != 60000 || r.FailedStep != "" {
		t.Errorf("running: %+v", r)
	}
}

func TestWriteGolden(t *testing.T) {
	s := fixture(t)
	newer := rec("api-2", "api", Ready, func(r *Record) { r.Image = "codelab-services-base-2026-11-28-0930" })
	s.Pairs = append(s.Pairs, pair(t, newer))
	s.Checks = append(s.Checks, serf("api-2", api.HealthPassing))
	v := Build(s, NoImages("the droplet's user_data has no do_token"), Filter{}, now)
	for _, f := range []struct {
		name  string
		write func(*bytes.Buffer, View) error
	}{
		{"table.golden", func(b *bytes.Buffer, v View) error { return WriteTable(b, v) }},
		{"json.golden", func(b *bytes.Buffer, v View) error { return WriteJSON(b, v) }},
	} {
		var b bytes.Buffer
		if err := f.write(&b, v); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", f.name)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/fleet -update)", err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s differs (go test ./internal/fleet -update):\n%s", f.name, b.String())
		}
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 40 * time.Second: "40s", 12 * time.Minute: "12m", 5 * time.Hour: "5h", 47 * time.Hour: "47h", 72 * time.Hour: "3d",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%s) = %s, want %s", d, got, want)
		}
	}
}

// A record the fleet timer published as degraded (the droplet's own live
// checks failed: a stopped container, a dead unit) reads degraded even
// while Consul's checks all pass; failing checks are added to its summary.
func TestDegradedRecord(t *testing.T) {
	deg := func(r *Record) { r.Summary = "degraded: container web-web-1: exited " }
	for _, tc := range []struct {
		name    string
		checks  api.HealthChecks
		summary string
	}{
		{"checks passing", api.HealthChecks{serf("web-1", api.HealthPassing), check("web-1", "web HTTP", api.HealthPassing)},
			"degraded: container web-web-1: exited "},
		{"check failing", api.HealthChecks{serf("web-1", api.HealthPassing), check("web-1", "web HTTP", api.HealthCritical)},
			"degraded: container web-web-1: exited ; failing: web HTTP critical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Build(Snapshot{Pairs: api.KVPairs{pair(t, rec("web-1", "web", Degraded, deg))}, Checks: tc.checks}, nil, Filter{}, now)
			if d := v.Droplets[0]; d.State != Degraded || d.Summary != tc.summary || v.ExitCode != exitcode.Degraded {
				t.Fatalf("exit %d, %+v", v.ExitCode, d)
			}
		})
	}
	// A node Consul marks failed is unreachable, whatever it last said.
	v := Build(Snapshot{Pairs: api.KVPairs{pair(t, rec("web-1", "web", Degraded, deg))}, Checks: api.HealthChecks{serf("web-1", api.HealthCritical)}}, nil, Filter{}, now)
	if d := v.Droplets[0]; d.State != Unreachable {
		t.Fatalf("%+v", d)
	}
}

func TestSame(t *testing.T) {
	base := rec("web-1", "web", Ready)
	for _, tc := range []struct {
		name string
		mod  func(*Record)
		same bool
	}{
		{"published later", func(r *Record) { r.PublishedAt = r.PublishedAt.Add(time.Minute) }, true},
		{"state", func(r *Record) { r.State = Degraded }, false},
		{"summary", func(r *Record) { r.Summary = "degraded: x" }, false},
		{"last backup", func(r *Record) { t := now; r.LastBackup = &t }, false},
		{"boot duration of a finished boot", func(r *Record) { r.BootMS++ }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			tc.mod(&r)
			if got := Same(base, r); got != tc.same {
				t.Errorf("Same = %v, want %v", got, tc.same)
			}
		})
	}
	// A boot in progress counts its duration up: no change.
	a, b := rec("web-1", "web", Booting), rec("web-1", "web", Booting)
	b.BootMS += 10000
	if !Same(a, b) {
		t.Error("a running boot's duration counted as a change")
	}
}
