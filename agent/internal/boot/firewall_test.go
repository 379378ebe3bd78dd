package boot

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/codelab-app/infra/agent/internal/firewall"
	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// needs reports whether step waits, directly or not, for dep in p.
func needs(p Plan, step, dep string) bool {
	for _, n := range p {
		if n.Step.Name() != step {
			continue
		}
		for _, a := range n.After {
			if a == dep || needs(p, a, dep) {
				return true
			}
		}
	}
	return false
}

func TestNoContainerStartsBeforeTheFirewallStep(t *testing.T) {
	p := NewPlan(Deps{})
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range p {
		names = append(names, n.Step.Name())
		if n.Step.Name() == StepFirewall && n.Kind != EveryBoot {
			t.Errorf("the firewall step runs %s; a reboot empties the tables, so it must run every boot", n.Kind)
		}
	}
	if !slices.Contains(names, StepFirewall) {
		t.Fatalf("no %s step in %v", StepFirewall, names)
	}
	if !needs(p, StepFirewall, StepDocker) {
		t.Errorf("%s does not wait for %s (DOCKER-USER is dockerd's chain)", StepFirewall, StepDocker)
	}
	// units starts consul-template, whose exec runs compose up.
	for _, s := range []string{StepUnits, StepComposeUp} {
		if !needs(p, s, StepFirewall) {
			t.Errorf("%s does not wait for %s", s, StepFirewall)
		}
	}
	if needs(p, StepPullImages, StepFirewall) {
		t.Errorf("%s waits for %s; pulls start no container", StepPullImages, StepFirewall)
	}
}

func TestFirewallStepRecordsTheRulesOrSaysWhatToRun(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	rec := NewRecorder(root, State{})
	rep := firewall.Report{Families: []firewall.Family{firewall.IPv4, firewall.IPv6}, Added: 5}
	plan := Plan{{Step: &FirewallStep{Apply: func(context.Context) (firewall.Report, error) { return rep, nil }, Rec: rec}, Kind: EveryBoot}}
	rec.Planned(plan)
	if err := (&Runner{Plan: plan, Events: rec}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := rec.Snapshot()
	st, _ := snap.Step(StepFirewall)
	if st.Result != OK || st.Detail != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), 5 rules added" {
		t.Fatalf("step = %+v", st)
	}

	boom := &firewall.Error{Family: firewall.IPv6, Doing: "find ip6tables", Err: errors.New(`exec: "ip6tables": executable file not found in $PATH`)}
	s := &FirewallStep{Apply: func(context.Context) (firewall.Report, error) { return firewall.Report{}, boom }}
	err := s.Run(context.Background())
	if !errors.Is(err, boom) || HintOf(err) != firewall.Hint {
		t.Fatalf("err = %v, hint %q", err, HintOf(err))
	}
	if want := `close the metadata service to containers: IPv6 DOCKER-USER: find ip6tables: exec: "ip6tables": executable file not found in $PATH`; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if err := (&FirewallStep{}).Run(context.Background()); err == nil {
		t.Error("a step without an installer succeeded")
	}
}
