package boot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// Paths on the droplet.
const (
	StateFile    = "/var/lib/codelab/state.json"
	InstanceFile = "/var/lib/codelab/instance"
	// ImageFile is written by the imager when it bakes a snapshot: one line
	// naming the image (codelab-api-base-2026-01-02-0304).
	ImageFile = "/etc/codelab/image"
	// LockFile is held (flock) by a running boot for its whole life, so
	// status can tell a boot in progress from one that died, without
	// trusting a pid that may have been reused.
	LockFile = "/run/codelab/boot.lock"
	// RestartPendingFile lists the units whose config render is about to
	// change (or has changed) and that have not been restarted since. It
	// is written before the new config and removed once the units step has
	// restarted them, so a boot killed in between restarts them next time.
	RestartPendingFile = "/var/lib/codelab/restart-pending"
	// CompletedFile records the last boot that completed (ready): the
	// droplet and user_data it was for. A boot that finds it for the same
	// droplet and user_data is a reboot (or a rerun): it starts the
	// containers from the env files that boot left, without waiting for
	// Consul. It is 0600 and status does not print it.
	CompletedFile = "/var/lib/codelab/completed.json"
)

// Completed is CompletedFile.
type Completed struct {
	DropletID string `json:"dropletId"`
	// UserDataSHA256 is the SHA-256 of the user_data line, hex: the line
	// holds secrets, the record only tells whether it changed.
	UserDataSHA256 string    `json:"userDataSha256"`
	FinishedAt     time.Time `json:"finishedAt"`
}

// ReadCompleted reads CompletedFile; nil when there is none or it cannot
// be read (a first boot, as far as the fast path is concerned).
func ReadCompleted(root fsutil.Root) *Completed {
	b, err := root.ReadFile(CompletedFile)
	if err != nil {
		return nil
	}
	var c Completed
	if err := json.Unmarshal(b, &c); err != nil || c.DropletID == "" || c.UserDataSHA256 == "" {
		return nil
	}
	return &c
}

// WriteCompleted records a boot that completed for the facts' droplet and
// user_data.
func WriteCompleted(root fsutil.Root, f *Facts, at time.Time) error {
	if f.Meta.DropletID == "" || f.UserDataSHA256 == "" {
		return errors.New("record the completed boot: droplet_id or user_data unknown")
	}
	b, err := json.MarshalIndent(Completed{DropletID: f.Meta.DropletID, UserDataSHA256: f.UserDataSHA256, FinishedAt: at}, "", "  ")
	if err != nil {
		return err
	}
	if _, err := root.WriteFile(CompletedFile, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record the completed boot: %w", err)
	}
	return nil
}

// SchemaVersion is the state file's (and status --json's) format version.
const SchemaVersion = 1

// Overall boot results in the state file.
const (
	BootRunning = "booting"
	BootReady   = "ready"
	BootFailed  = "failed"
)

// State is /var/lib/codelab/state.json.
type State struct {
	SchemaVersion int    `json:"schemaVersion"`
	Role          string `json:"role,omitempty"`
	DropletID     string `json:"dropletId,omitempty"`
	Image         string `json:"image,omitempty"`
	AgentVersion  string `json:"agentVersion,omitempty"`
	BootID        string `json:"bootId,omitempty"` // the kernel's boot_id when this boot ran
	PID           int    `json:"pid,omitempty"`
	// Attempt counts the boots since the kernel booted: systemd restarts a
	// failed boot with backoff, and each try is one attempt.
	Attempt int `json:"attempt,omitempty"`
	// PreviousError is the error of the attempt before this one, if it
	// failed.
	PreviousError string     `json:"previousError,omitempty"`
	Result        string     `json:"result"`
	Status        string     `json:"status,omitempty"` // the latest progress line
	Error         string     `json:"error,omitempty"`
	StartedAt     time.Time  `json:"startedAt"`
	FinishedAt    *time.Time `json:"finishedAt,omitempty"`
	DurationMS    int64      `json:"durationMs"`
	// CPUMS is the agent's own CPU time (user + system) for this boot, and
	// ChildCPUMS that of the programs it ran and waited for (the config
	// validators, docker compose), both recorded when the boot ends.
	CPUMS      int64         `json:"cpuMs,omitempty"`
	ChildCPUMS int64         `json:"childCpuMs,omitempty"`
	Steps      []StepState   `json:"steps"`
	Images     []ImageState  `json:"images,omitempty"`
	Compose    *ComposeState `json:"compose,omitempty"`
}

// StepState is one step in the state file.
type StepState struct {
	Name       string     `json:"name"`
	Kind       Kind       `json:"kind"`
	After      []string   `json:"after,omitempty"`
	Result     Result     `json:"result"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	DurationMS int64      `json:"durationMs"`
	Error      string     `json:"error,omitempty"`
	Hint       string     `json:"hint,omitempty"`
	Detail     string     `json:"detail,omitempty"`
	// Waiting is set while the step waits on something outside the
	// droplet's control (a Consul leader, a KV key, the registry).
	Waiting *Wait `json:"waiting,omitempty"`
}

// Wait is what a step is waiting for, why, and what would end the wait.
type Wait struct {
	What   string    `json:"what"`
	Reason string    `json:"reason,omitempty"`
	Hint   string    `json:"hint,omitempty"`
	Since  time.Time `json:"since"`
}

// ImageState is one image pull.
type ImageState struct {
	Ref string `json:"ref"`
	// Result is pulling, pulled, present (here already at the registry's
	// digest), baked (baked into the droplet's image; no registry
	// contacted) or failed. Like every addition to the state file and
	// status --json, a new value keeps schemaVersion; a changed meaning
	// or a removed field would bump it.
	Result     string `json:"result"`
	Digest     string `json:"digest,omitempty"`
	Current    int64  `json:"bytes"`
	Total      int64  `json:"totalBytes,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"durationMs"`
}

// ComposeState records what compose up found when it failed.
type ComposeState struct {
	Project   string   `json:"project"`
	Unhealthy string   `json:"unhealthyService,omitempty"`
	State     string   `json:"state,omitempty"`
	Logs      []string `json:"logs,omitempty"`
}

// Step returns the named step's state.
func (s *State) Step(name string) (StepState, bool) {
	for _, st := range s.Steps {
		if st.Name == name {
			return st, true
		}
	}
	return StepState{}, false
}

// ReadState reads the state file below root.
func ReadState(root fsutil.Root) (State, error) {
	b, err := root.ReadFile(StateFile)
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("decode %s: %w", StateFile, err)
	}
	if s.SchemaVersion != SchemaVersion {
		return State{}, fmt.Errorf("%s has schemaVersion %d; this agent reads %d", StateFile, s.SchemaVersion, SchemaVersion)
	}
	return s, nil
}

// Recorder holds the boot's state and writes it atomically after every
// change that matters (step start and end, at most once a second for pull
// progress). It implements Events.
type Recorder struct {
	Root fsutil.Root
	// Notify, when set, receives sd_notify lines (STATUS=...).
	Notify func(state string)
	Now    func() time.Time
	// OnChange, when set, is called with a copy of the state after every
	// save (the fleet publisher). It runs under the Recorder's lock: it
	// must not block or call back into the Recorder.
	OnChange func(State)

	mu       sync.Mutex
	st       State
	lastSave time.Time
	saveErr  error
}

// NewRecorder starts a boot's state.
func NewRecorder(root fsutil.Root, base State) *Recorder {
	base.SchemaVersion = SchemaVersion
	base.Result = BootRunning
	return &Recorder{Root: root, st: base}
}

func (r *Recorder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Snapshot returns a copy of the state.
func (r *Recorder) Snapshot() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copyLocked()
}

func (r *Recorder) copyLocked() State {
	s := r.st
	s.Steps = append([]StepState(nil), r.st.Steps...)
	s.Images = append([]ImageState(nil), r.st.Images...)
	if r.st.Compose != nil {
		c := *r.st.Compose
		s.Compose = &c
	}
	return s
}

// Update changes the state and saves it.
func (r *Recorder) Update(fn func(*State)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.st)
	return r.saveLocked()
}

// Progress changes the state and saves it at most once a second.
func (r *Recorder) Progress(fn func(*State)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.st)
	if r.now().Sub(r.lastSave) >= time.Second {
		_ = r.saveLocked()
	}
}

// SetStatus records a progress line and passes it to systemd.
func (r *Recorder) SetStatus(line string) {
	r.mu.Lock()
	r.st.Status = line
	r.mu.Unlock()
	if r.Notify != nil {
		r.Notify("STATUS=" + line)
	}
}

func (r *Recorder) saveLocked() error {
	st := r.copyLocked()
	if r.OnChange != nil {
		defer r.OnChange(st)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	b = append(b, '\n')
	r.lastSave = r.now()
	if _, err := r.Root.WriteFile(StateFile, b, 0o600); err != nil {
		r.saveErr = fmt.Errorf("write state file: %w", err)
		return r.saveErr
	}
	return nil
}

// Err returns the last error writing the state file.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveErr
}

// Planned implements Events.
func (r *Recorder) Planned(p Plan) {
	_ = r.Update(func(s *State) {
		s.Steps = s.Steps[:0]
		for _, n := range p {
			s.Steps = append(s.Steps, StepState{Name: n.Step.Name(), Kind: n.Kind, After: n.After, Result: Pending})
		}
	})
}

// Started implements Events.
func (r *Recorder) Started(step string, at time.Time) {
	_ = r.Update(func(s *State) {
		if i := s.index(step); i >= 0 {
			t := at
			s.Steps[i].StartedAt = &t
			s.Steps[i].Result = Running
		}
	})
	r.SetStatus(statusLine(step))
}

// Finished implements Events.
func (r *Recorder) Finished(step string, res Result, _ time.Time, d time.Duration, err error) {
	_ = r.Update(func(s *State) {
		if i := s.index(step); i >= 0 {
			s.Steps[i].Result = res
			s.Steps[i].DurationMS = d.Milliseconds()
			s.Steps[i].Waiting = nil
			if err != nil {
				s.Steps[i].Error = err.Error()
				s.Steps[i].Hint = HintOf(err)
			}
		}
	})
}

// Finish records the boot's end and returns the final state.
func (r *Recorder) Finish(bootErr error) State {
	end := r.now()
	_ = r.Update(func(s *State) {
		s.FinishedAt = &end
		s.DurationMS = end.Sub(s.StartedAt).Milliseconds()
		s.CPUMS, s.ChildCPUMS = cpuTimes()
		if bootErr != nil {
			s.Result = BootFailed
			s.Error = bootErr.Error()
			s.Status = "failed: " + firstLine(bootErr.Error())
		} else {
			s.Result = BootReady
			s.Status = fmt.Sprintf("ready in %s", (time.Duration(s.DurationMS) * time.Millisecond).Round(100*time.Millisecond))
		}
	})
	st := r.Snapshot()
	if r.Notify != nil {
		r.Notify("STATUS=" + st.Status)
	}
	return st
}

func (s *State) index(step string) int {
	for i := range s.Steps {
		if s.Steps[i].Name == step {
			return i
		}
	}
	return -1
}

func statusLine(step string) string {
	return strings.ReplaceAll(step, "-", " ")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// InstanceStore records, in /var/lib/codelab/instance, the droplet_id the
// once-per-instance steps ran for. A droplet made from a snapshot has a new
// droplet_id, so its once-per-instance steps run again. The file is never
// deleted, only replaced.
type InstanceStore struct {
	Root fsutil.Root
	// ID returns this droplet's droplet_id; it is known once metadata has
	// been fetched, which every once-per-instance step depends on.
	ID func() string

	mu sync.Mutex
}

type instanceFile struct {
	DropletID string               `json:"dropletId"`
	Done      map[string]time.Time `json:"done"`
}

func (s *InstanceStore) read() (instanceFile, error) {
	var f instanceFile
	b, err := s.Root.ReadFile(InstanceFile)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read %s: %w", InstanceFile, err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return instanceFile{}, fmt.Errorf("decode %s: %w", InstanceFile, err)
	}
	return f, nil
}

// Done implements Instance.
func (s *InstanceStore) Done(step string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.ID()
	if id == "" {
		return false, errors.New("droplet_id not known yet")
	}
	f, err := s.read()
	if err != nil {
		return false, err
	}
	if f.DropletID != id {
		return false, nil
	}
	_, ok := f.Done[step]
	return ok, nil
}

// Mark implements Instance.
func (s *InstanceStore) Mark(step string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.ID()
	if id == "" {
		return errors.New("droplet_id not known yet")
	}
	f, err := s.read()
	if err != nil {
		return err
	}
	if f.DropletID != id {
		f = instanceFile{DropletID: id}
	}
	if f.Done == nil {
		f.Done = map[string]time.Time{}
	}
	f.Done[step] = time.Now().UTC()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.Root.WriteFile(InstanceFile, append(b, '\n'), 0o600)
	return err
}

// Wait records that step is waiting for w.What. Since is kept while the
// step keeps waiting for the same thing, so status can say since when.
func (r *Recorder) Wait(step string, w Wait) {
	if r == nil {
		return
	}
	var line string
	_ = r.Update(func(s *State) {
		i := s.index(step)
		if i < 0 {
			return
		}
		if old := s.Steps[i].Waiting; old != nil && old.What == w.What {
			w.Since = old.Since
		} else if w.Since.IsZero() {
			w.Since = r.now()
		}
		if old := s.Steps[i].Waiting; old != nil && *old == w {
			return
		}
		s.Steps[i].Waiting = &w
		line = "waiting for " + w.What
	})
	if line != "" {
		r.SetStatus(line)
	}
}

// Unwait records that step is no longer waiting.
func (r *Recorder) Unwait(step string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	i := r.st.index(step)
	waiting := i >= 0 && r.st.Steps[i].Waiting != nil
	r.mu.Unlock()
	if !waiting {
		return
	}
	_ = r.Update(func(s *State) { s.Steps[i].Waiting = nil })
}

// SetDetail records a one-line summary of what a step did.
func (r *Recorder) SetDetail(step, detail string) {
	_ = r.Update(func(s *State) {
		if i := s.index(step); i >= 0 {
			s.Steps[i].Detail = detail
		}
	})
}

// cpuTimes returns the CPU time, in milliseconds, this process used and
// that of its children it waited for.
func cpuTimes() (self, children int64) {
	ms := func(who int) int64 {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) != nil {
			return 0
		}
		return (time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano())).Milliseconds()
	}
	return ms(syscall.RUSAGE_SELF), ms(syscall.RUSAGE_CHILDREN)
}
