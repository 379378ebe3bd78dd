package bootbench

import (
	"strings"
	"testing"
	"time"
)

func at(s int) *time.Time {
	t := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).Add(time.Duration(s) * 100 * time.Millisecond)
	return &t
}

func TestOwnWorkIsTheBootMinusTheUnionOfWaits(t *testing.T) {
	type step = struct {
		Name       string     `json:"name"`
		StartedAt  *time.Time `json:"startedAt"`
		DurationMS int64      `json:"durationMs"`
		Detail     string     `json:"detail"`
	}
	s := agentState{DurationMS: 10000, Steps: []step{
		{Name: "fetch-metadata", StartedAt: at(0), DurationMS: 200}, // own work
		{Name: "docker", StartedAt: at(2), DurationMS: 1000},        // wait 0.2-1.2
		{Name: "pull-images", StartedAt: at(3), DurationMS: 5000},   // overlaps: 0.2-5.3
		{Name: "consul-ready", StartedAt: at(10), DurationMS: 2000}, // inside
		{Name: "render", StartedAt: at(55), DurationMS: 300},        // own work
		{Name: "compose-up", StartedAt: at(60), DurationMS: 3500},   // 6.0-9.5
		{Name: "units", StartedAt: nil, DurationMS: 0},              // never started
	}}
	// Waits: 0.2-5.3 and 6.0-9.5 = 5.1 + 3.5 = 8.6 s; own = 1.4 s.
	if got, want := s.own(), 1400*time.Millisecond; got != want {
		t.Fatalf("own = %s, want %s", got, want)
	}
}

func TestMissesNamesEachTarget(t *testing.T) {
	r := Result{
		OldWay:  Run{Name: "old", Total: 30 * time.Second},
		Pulling: Run{Name: "pull", Total: 20 * time.Second, Own: 500 * time.Millisecond},
		Baked:   Run{Name: "baked", Total: 8 * time.Second, Own: 300 * time.Millisecond},
		Reboot:  Run{Name: "reboot", Total: 4 * time.Second, Own: 200 * time.Millisecond},
	}
	if m := r.Misses(); len(m) != 0 {
		t.Fatalf("a result within every target misses %v", m)
	}
	r.Baked.Total = 10 * time.Second // 0.33x
	r.Pulling.Total = 25 * time.Second
	r.Reboot.Own = 2 * time.Second
	r.Baked.Pulls = 3
	m := strings.Join(r.Misses(), "\n")
	for _, want := range []string{"(3) baked is 0.33x", "(2) pulling is 0.83x", "reboot: the agent's own work is 2s", "logged 3 requests"} {
		if !strings.Contains(m, want) {
			t.Errorf("misses lack %q:\n%s", want, m)
		}
	}
}
