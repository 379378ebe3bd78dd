// Package fleet is the fleet view: every agent publishes a compact record
// of its boot to Consul KV (codelab/_fleet/<env>/<node>), held by a Consul
// session tied to the node's serfHealth check, and `codelab-agent status
// --fleet` reads every record back, joined with Consul's live health checks
// and the newest snapshot of each image family.
//
// The package takes a *api.Client from its caller; it never builds one.
package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
)

// SchemaVersion is the version of a published Record and of
// `status --fleet --json`. A reader shows a record with a newer version as
// unknown instead of guessing at it.
const SchemaVersion = 1

// Prefix is the KV folder every record lives under.
const Prefix = "codelab/_fleet/"

// Key is where the record of node in env lives.
func Key(env, node string) string { return Prefix + env + "/" + node }

// maxReason bounds the failing step's reason in a record: the record is a
// summary, `codelab-agent status` on the droplet has the whole error.
const maxReason = 300

// Record is what one droplet publishes.
type Record struct {
	SchemaVersion int    `json:"schemaVersion"`
	Node          string `json:"node"` // the Consul node name
	Env           string `json:"env"`
	Role          string `json:"role,omitempty"`
	DropletID     string `json:"dropletId,omitempty"`
	// Image is the snapshot the droplet was made from
	// (codelab-services-base-2026-01-02-0304).
	Image        string     `json:"image,omitempty"`
	AgentVersion string     `json:"agentVersion,omitempty"`
	AppImages    []AppImage `json:"appImages,omitempty"`
	// State is the boot's result (booting, ready or failed) while the boot
	// publishes; after it, codelab-fleet.timer publishes the droplet's
	// overall state as `codelab-agent status` computes it, which may also
	// be degraded, and Summary is then status's summary.
	State      string    `json:"state"`
	Summary    string    `json:"summary,omitempty"`
	FailedStep string    `json:"failedStep,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	BootStart  time.Time `json:"bootStartedAt"`
	BootMS     int64     `json:"bootDurationMs"`
	// LastBackup is when the newest verified backup was taken (neo4j only).
	LastBackup  *time.Time `json:"lastBackup,omitempty"`
	PublishedAt time.Time  `json:"publishedAt"`
}

// Key is where the record lives.
func (r Record) Key() string { return Key(r.Env, r.Node) }

// AppImage is one of the role's application images.
type AppImage struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
}

// FromState makes the record of a boot's state.
func FromState(st boot.State, env, node string, lastBackup *time.Time, now time.Time) Record {
	r := Record{
		SchemaVersion: SchemaVersion,
		Node:          node,
		Env:           env,
		Role:          st.Role,
		DropletID:     st.DropletID,
		Image:         st.Image,
		AgentVersion:  st.AgentVersion,
		State:         st.Result,
		Summary:       firstLine(st.Status),
		BootStart:     st.StartedAt,
		BootMS:        st.DurationMS,
		LastBackup:    lastBackup,
		PublishedAt:   now,
	}
	if r.BootMS == 0 && st.FinishedAt == nil && !st.StartedAt.IsZero() {
		r.BootMS = now.Sub(st.StartedAt).Milliseconds()
	}
	for _, im := range st.Images {
		r.AppImages = append(r.AppImages, AppImage{Ref: im.Ref, Digest: im.Digest})
	}
	for _, s := range st.Steps {
		if s.Result == boot.Failed {
			r.FailedStep, r.Reason = s.Name, clip(firstLine(s.Error))
			break
		}
	}
	if r.State == boot.BootFailed && r.Reason == "" {
		r.Reason = clip(firstLine(st.Error))
	}
	return r
}

// ErrNewerSchema is returned by Decode for a record written by a newer
// agent.
var ErrNewerSchema = errors.New("record has a newer schemaVersion than this agent reads")

// Decode parses a published record. It fails on bad JSON, on a missing or
// newer schemaVersion (ErrNewerSchema) and on a record without a state.
func Decode(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode fleet record: %w", err)
	}
	switch {
	case r.SchemaVersion > SchemaVersion:
		return Record{}, fmt.Errorf("schemaVersion %d, this agent reads %d: %w", r.SchemaVersion, SchemaVersion, ErrNewerSchema)
	case r.SchemaVersion < 1:
		return Record{}, fmt.Errorf("decode fleet record: no schemaVersion")
	case r.State == "":
		return Record{}, fmt.Errorf("decode fleet record: no state")
	}
	return r, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func clip(s string) string {
	if len(s) <= maxReason {
		return s
	}
	return strings.ToValidUTF8(s[:maxReason-3], "") + "..."
}
