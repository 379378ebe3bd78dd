package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/codelab-app/infra/internal/exitcode"
)

// A droplet's state in the fleet view.
const (
	Ready       = "ready"
	Booting     = "booting"
	Degraded    = "degraded"
	Failed      = "failed"
	Unreachable = "unreachable" // Consul has lost the node
	Unknown     = "unknown"     // its record cannot be read by this agent
)

// severity orders the states; the worst one is the fleet's.
var severity = map[string]int{Ready: 0, Booting: 1, Degraded: 2, Unknown: 3, Unreachable: 4, Failed: 5}

// Code maps a state to its exit code (the single-droplet table): ready 0,
// degraded 2, booting 3, anything else 1.
func Code(state string) int {
	return exitcode.OfState(state)
}

// Droplet is one line of the fleet view.
type Droplet struct {
	Node      string `json:"node"`
	Env       string `json:"env"`
	Role      string `json:"role,omitempty"`
	State     string `json:"state"`
	Summary   string `json:"summary"`
	DropletID string `json:"dropletId,omitempty"`

	Image        string     `json:"image,omitempty"`
	ImageCreated *time.Time `json:"imageCreatedAt,omitempty"`
	StaleImage   bool       `json:"staleImage"`
	NewestImage  string     `json:"newestImage,omitempty"` // set when StaleImage

	AgentVersion string     `json:"agentVersion,omitempty"`
	AgentDiffers bool       `json:"agentVersionDiffers"`
	AppImages    []AppImage `json:"appImages,omitempty"`

	FailedStep    string     `json:"failedStep,omitempty"`
	Reason        string     `json:"reason,omitempty"`
	FailingChecks []string   `json:"failingChecks,omitempty"`
	BootStart     *time.Time `json:"bootStartedAt,omitempty"`
	BootMS        int64      `json:"bootDurationMs,omitempty"`
	LastBackup    *time.Time `json:"lastBackup,omitempty"`
	PublishedAt   *time.Time `json:"publishedAt,omitempty"`
	// Held is false once the session that held the record ended (Consul
	// declared the node failed, or it left).
	Held bool `json:"held"`
}

// View is the whole fleet view, what `status --fleet --json` prints.
type View struct {
	SchemaVersion int    `json:"schemaVersion"`
	Overall       string `json:"overall"`
	ExitCode      int    `json:"exitCode"`
	Summary       string `json:"summary"`
	// AgentMajority is the agent version most droplets run; empty on a tie.
	AgentMajority string `json:"agentVersionMajority,omitempty"`
	// ImagesFrom says where "newest snapshot of the family" came from:
	// digitalocean (the API, with the droplet's read-only token) or
	// records (the newest image name among the records).
	ImagesFrom  string    `json:"imagesFrom"`
	ImagesError string    `json:"imagesError,omitempty"`
	Droplets    []Droplet `json:"droplets"`
	At          time.Time `json:"at"`
}

// Filter narrows the view.
type Filter struct {
	Env  string
	Role string
}

// Snapshot is what Consul said: the records and every node's checks.
type Snapshot struct {
	Pairs  api.KVPairs
	Checks api.HealthChecks
}

type nodeHealth struct {
	serf    string // serfHealth's status; empty when the node is not in the catalog
	output  string
	failing []failingCheck
}

type failingCheck struct {
	name    string // "web HTTP /healthz critical"
	service string // the check's service; "" for a node check
}

func healthByNode(checks api.HealthChecks) map[string]*nodeHealth {
	m := map[string]*nodeHealth{}
	for _, c := range checks {
		h := m[c.Node]
		if h == nil {
			h = &nodeHealth{}
			m[c.Node] = h
		}
		if c.CheckID == "serfHealth" {
			h.serf, h.output = c.Status, c.Output
			continue
		}
		if c.Status == api.HealthCritical || c.Status == api.HealthWarning {
			name := c.Name
			if name == "" {
				name = c.CheckID
			}
			h.failing = append(h.failing, failingCheck{name: name + " " + c.Status, service: c.ServiceName})
		}
	}
	for _, h := range m {
		sort.Slice(h.failing, func(i, j int) bool { return h.failing[i].name < h.failing[j].name })
	}
	return m
}

// Build joins the records with Consul's health and the images into the
// view. imgs nil (or NoImages) means: judge stale images from the
// records alone.
func Build(s Snapshot, imgs *Images, f Filter, now time.Time) View {
	health := healthByNode(s.Checks)
	var rows []Droplet
	for _, p := range s.Pairs {
		env, node, ok := splitKey(p.Key)
		if !ok {
			continue // a folder, not a record
		}
		if f.Env != "" && env != f.Env {
			continue
		}
		d := Droplet{Node: node, Env: env, Held: p.Session != ""}
		rec, err := Decode(p.Value)
		if err != nil {
			// Never dropped: a record this agent cannot read is shown
			// with its node name, whatever the role filter.
			d.State, d.Summary = Unknown, err.Error()
			rows = append(rows, d)
			continue
		}
		if f.Role != "" && rec.Role != f.Role {
			continue
		}
		fill(&d, rec)
		judge(&d, rec, health[node])
		rows = append(rows, d)
	}
	if imgs == nil || imgs.Source == FromRecords {
		fromRecs := ImagesFromRecords(recordsOf(s, f))
		if imgs != nil {
			fromRecs.Err = imgs.Err
		}
		imgs = fromRecs
	}
	v := View{SchemaVersion: SchemaVersion, ImagesFrom: imgs.Source, ImagesError: imgs.Err, At: now, Droplets: rows}
	for i := range v.Droplets {
		imgs.judge(&v.Droplets[i])
	}
	v.AgentMajority = majority(v.Droplets)
	counts := map[string]int{}
	v.Overall = Ready
	for i := range v.Droplets {
		d := &v.Droplets[i]
		if v.AgentMajority != "" && d.AgentVersion != "" && d.AgentVersion != v.AgentMajority {
			d.AgentDiffers = true
		}
		counts[d.State]++
		if severity[d.State] > severity[v.Overall] {
			v.Overall = d.State
		}
	}
	sort.Slice(v.Droplets, func(i, j int) bool {
		a, b := v.Droplets[i], v.Droplets[j]
		if a.Env != b.Env {
			return a.Env < b.Env
		}
		return a.Node < b.Node
	})
	if len(v.Droplets) == 0 {
		v.Overall = Unknown
	}
	v.ExitCode = Code(v.Overall)
	v.Summary = summary(len(v.Droplets), counts)
	return v
}

// recordsOf decodes the records that pass the filter (for the fallback
// "newest image among the records").
func recordsOf(s Snapshot, f Filter) []Record {
	var out []Record
	for _, p := range s.Pairs {
		env, _, ok := splitKey(p.Key)
		if !ok || (f.Env != "" && env != f.Env) {
			continue
		}
		if r, err := Decode(p.Value); err == nil {
			out = append(out, r)
		}
	}
	return out
}

func summary(n int, counts map[string]int) string {
	if n == 0 {
		return "no droplet has published a record"
	}
	var parts []string
	for _, st := range []string{Ready, Booting, Degraded, Unknown, Unreachable, Failed} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	noun := "droplets"
	if n == 1 {
		noun = "droplet"
	}
	return fmt.Sprintf("%d %s: %s", n, noun, strings.Join(parts, ", "))
}

func splitKey(key string) (env, node string, ok bool) {
	rest, found := strings.CutPrefix(key, Prefix)
	if !found || strings.HasSuffix(rest, "/") {
		return "", "", false
	}
	env, node, found = strings.Cut(rest, "/")
	if !found {
		return "", env, true
	}
	return env, node, true
}

func fill(d *Droplet, r Record) {
	d.Role, d.DropletID, d.Image, d.AgentVersion = r.Role, r.DropletID, r.Image, r.AgentVersion
	d.AppImages, d.FailedStep, d.Reason, d.BootMS = r.AppImages, r.FailedStep, r.Reason, r.BootMS
	d.LastBackup = r.LastBackup
	if !r.BootStart.IsZero() {
		t := r.BootStart
		d.BootStart = &t
	}
	if !r.PublishedAt.IsZero() {
		t := r.PublishedAt
		d.PublishedAt = &t
	}
}

// judge decides a droplet's state from its record and Consul's health.
func judge(d *Droplet, r Record, h *nodeHealth) {
	// The checks of the role's own service (and node checks) decide
	// degraded, as they decide whether Consul hands the service to its
	// clients; the checks of other services on the node (the neo4j
	// monitor's backup-age alert) are reported, and leave the state alone.
	var degrading, alerting []string
	if h != nil {
		for _, c := range h.failing {
			d.FailingChecks = append(d.FailingChecks, c.name)
			if c.service == "" || c.service == r.Role {
				degrading = append(degrading, c.name)
			} else {
				alerting = append(alerting, c.name)
			}
		}
	}
	was := r.State
	if r.Summary != "" {
		was += ": " + r.Summary
	}
	switch {
	case h == nil || h.serf == "":
		d.State = Unreachable
		d.Summary = "not in Consul's catalog (left, or never joined); last published " + was
		return
	case h.serf == api.HealthCritical:
		d.State = Unreachable
		d.Summary = "Consul marks the node failed; last published " + was
		return
	}
	switch r.State {
	case Failed:
		d.State = Failed
		d.Summary = "boot failed"
		if r.FailedStep != "" {
			d.Summary += " at " + r.FailedStep
		}
		if r.Reason != "" {
			d.Summary += ": " + r.Reason
		}
	case Booting:
		d.State, d.Summary = Booting, r.Summary
		if d.Summary == "" {
			d.Summary = "booting"
		}
	case Degraded:
		// The droplet's own live checks (units, containers) found a
		// problem; Consul's failing checks, if any, say more.
		d.State, d.Summary = Degraded, r.Summary
		if d.Summary == "" {
			d.Summary = "degraded"
		}
		if len(degrading) > 0 {
			d.Summary += "; failing: " + strings.Join(degrading, ", ")
		}
	case Ready:
		if len(degrading) > 0 {
			d.State = Degraded
			d.Summary = "failing: " + strings.Join(degrading, ", ")
		} else {
			d.State, d.Summary = Ready, r.Summary
		}
	default:
		d.State, d.Summary = Unknown, fmt.Sprintf("record has an unrecognised state %q", r.State)
	}
	if len(alerting) > 0 && d.State != Degraded {
		d.Summary += "; alerting: " + strings.Join(alerting, ", ")
	}
	if !d.Held {
		d.Summary += " (published before Consul last lost the node)"
	}
}

func majority(ds []Droplet) string {
	counts := map[string]int{}
	for _, d := range ds {
		if d.State != Unknown && d.AgentVersion != "" {
			counts[d.AgentVersion]++
		}
	}
	best, n, tie := "", 0, false
	for v, c := range counts {
		switch {
		case c > n:
			best, n, tie = v, c, false
		case c == n:
			tie = true
		}
	}
	if tie {
		return ""
	}
	return best
}
