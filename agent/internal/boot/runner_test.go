package boot

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeInstance is an Instance made of function fields.
type fakeInstance struct {
	done func(step string) (bool, error)
	mark func(step string) error
}

func (f fakeInstance) Done(s string) (bool, error) { return f.done(s) }
func (f fakeInstance) Mark(s string) error         { return f.mark(s) }

// events records the order steps started and finished in.
type events struct {
	mu       sync.Mutex
	started  []string
	finished map[string]Result
	errs     map[string]error
}

func newEvents() *events { return &events{finished: map[string]Result{}, errs: map[string]error{}} }

func (e *events) Planned(Plan) {}
func (e *events) Started(s string, _ time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = append(e.started, s)
}
func (e *events) Finished(s string, r Result, _ time.Time, _ time.Duration, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.finished[s] = r
	e.errs[s] = err
}

func ok(name string, log *[]string, mu *sync.Mutex) Func {
	return Func{StepName: name, Fn: func(context.Context) error {
		mu.Lock()
		*log = append(*log, name)
		mu.Unlock()
		return nil
	}}
}

func TestRunnerOrdersByDependency(t *testing.T) {
	var (
		mu  sync.Mutex
		log []string
	)
	plan := Plan{
		{Step: ok("c", &log, &mu), Kind: EveryBoot, After: []string{"b"}},
		{Step: ok("b", &log, &mu), Kind: EveryBoot, After: []string{"a"}},
		{Step: ok("a", &log, &mu), Kind: EveryBoot},
	}
	ev := newEvents()
	if err := (&Runner{Plan: plan, Events: ev}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(log, ","); got != "a,b,c" {
		t.Fatalf("order = %s, want a,b,c", got)
	}
	for _, s := range []string{"a", "b", "c"} {
		if ev.finished[s] != OK {
			t.Errorf("%s = %s, want ok", s, ev.finished[s])
		}
	}
}

func TestRunnerOverlapsIndependentSteps(t *testing.T) {
	// pull and consul each wait until the other has started: the plan can
	// only finish if they run at the same time.
	pullStarted, consulStarted := make(chan struct{}), make(chan struct{})
	meet := func(name string, mine, other chan struct{}) Func {
		return Func{StepName: name, Fn: func(ctx context.Context) error {
			close(mine)
			select {
			case <-other:
				return nil
			case <-time.After(5 * time.Second):
				return errors.New(name + " ran alone: steps did not overlap")
			}
		}}
	}
	plan := Plan{
		{Step: Func{StepName: "parse", Fn: func(context.Context) error { return nil }}, Kind: EveryBoot},
		{Step: meet("pull-images", pullStarted, consulStarted), Kind: EveryBoot, After: []string{"parse"}},
		{Step: meet("consul-ready", consulStarted, pullStarted), Kind: EveryBoot, After: []string{"parse"}},
	}
	if err := (&Runner{Plan: plan}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRunnerFailureStopsOnlyDependants(t *testing.T) {
	var (
		mu  sync.Mutex
		log []string
	)
	boom := errors.New("registry refused")
	plan := Plan{
		{Step: ok("parse", &log, &mu), Kind: EveryBoot},
		{Step: Func{StepName: "pull", Fn: func(context.Context) error { return WithHint(boom, "docker pull x") }}, Kind: EveryBoot, After: []string{"parse"}},
		{Step: ok("compose", &log, &mu), Kind: EveryBoot, After: []string{"pull", "consul"}},
		{Step: ok("after-compose", &log, &mu), Kind: EveryBoot, After: []string{"compose"}},
		{Step: ok("consul", &log, &mu), Kind: EveryBoot, After: []string{"parse"}},
	}
	ev := newEvents()
	err := (&Runner{Plan: plan, Events: ev}).Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the pull error", err)
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != "pull" {
		t.Fatalf("err = %v, want a StepError for pull", err)
	}
	want := map[string]Result{"parse": OK, "pull": Failed, "consul": OK, "compose": Blocked, "after-compose": Blocked}
	for s, r := range want {
		if ev.finished[s] != r {
			t.Errorf("%s = %s, want %s", s, ev.finished[s], r)
		}
	}
	if !strings.Contains(ev.errs["compose"].Error(), "pull failed") {
		t.Errorf("compose's reason = %v, want it to name pull", ev.errs["compose"])
	}
	if HintOf(ev.errs["pull"]) != "docker pull x" {
		t.Errorf("hint lost: %v", ev.errs["pull"])
	}
	for _, s := range log {
		if s == "compose" || s == "after-compose" {
			t.Errorf("%s ran although pull failed", s)
		}
	}
}

func TestRunnerOncePerInstance(t *testing.T) {
	var (
		mu  sync.Mutex
		log []string
	)
	var imu sync.Mutex
	marked := map[string]bool{"login": true} // done on this instance already
	inst := fakeInstance{
		done: func(s string) (bool, error) { imu.Lock(); defer imu.Unlock(); return marked[s], nil },
		mark: func(s string) error { imu.Lock(); defer imu.Unlock(); marked[s] = true; return nil },
	}
	plan := Plan{
		{Step: ok("login", &log, &mu), Kind: OncePerInstance},
		{Step: ok("first", &log, &mu), Kind: OncePerInstance},
		{Step: ok("render", &log, &mu), Kind: EveryBoot, After: []string{"login"}},
	}
	ev := newEvents()
	if err := (&Runner{Plan: plan, Instance: inst, Events: ev}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ev.finished["login"] != Skipped || ev.finished["first"] != OK || ev.finished["render"] != OK {
		t.Fatalf("results = %v", ev.finished)
	}
	if !marked["first"] {
		t.Error("first was not marked done")
	}
	log = nil
	ev = newEvents()
	if err := (&Runner{Plan: plan, Instance: inst, Events: ev}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Join(log, ",") != "render" {
		t.Fatalf("second boot ran %v, want only the every-boot step", log)
	}
}

func TestRunnerMarkFailureFailsStep(t *testing.T) {
	inst := fakeInstance{
		done: func(string) (bool, error) { return false, nil },
		mark: func(string) error { return errors.New("disk full") },
	}
	plan := Plan{{Step: Func{StepName: "x", Fn: func(context.Context) error { return nil }}, Kind: OncePerInstance}}
	err := (&Runner{Plan: plan, Instance: inst}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunnerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	plan := Plan{
		{Step: Func{StepName: "wait", Fn: func(ctx context.Context) error { cancel(); <-ctx.Done(); return ctx.Err() }}, Kind: EveryBoot},
		{Step: Func{StepName: "next", Fn: func(context.Context) error { t.Error("next ran after cancel"); return nil }}, Kind: EveryBoot, After: []string{"wait"}},
	}
	ev := newEvents()
	err := (&Runner{Plan: plan, Events: ev}).Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if ev.finished["wait"] != Canceled {
		t.Errorf("wait = %s", ev.finished["wait"])
	}
}

func TestRunnerPanicIsAFailure(t *testing.T) {
	plan := Plan{{Step: Func{StepName: "p", Fn: func(context.Context) error { panic("oops") }}, Kind: EveryBoot}}
	if err := (&Runner{Plan: plan}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "panic: oops") {
		t.Fatalf("err = %v", err)
	}
}

func TestPlanValidate(t *testing.T) {
	s := func(n string) Step { return Func{StepName: n, Fn: func(context.Context) error { return nil }} }
	for name, tc := range map[string]struct {
		plan Plan
		want string
	}{
		"cycle":     {Plan{{Step: s("a"), Kind: EveryBoot, After: []string{"b"}}, {Step: s("b"), Kind: EveryBoot, After: []string{"a"}}}, "cycle"},
		"unknown":   {Plan{{Step: s("a"), Kind: EveryBoot, After: []string{"zz"}}}, "unknown step \"zz\""},
		"duplicate": {Plan{{Step: s("a"), Kind: EveryBoot}, {Step: s("a"), Kind: EveryBoot}}, "twice"},
		"kind":      {Plan{{Step: s("a")}}, "kind"},
		"shortcut skips what it does not need": {Plan{{Step: s("a"), Kind: EveryBoot},
			{Step: s("b"), Kind: EveryBoot, Shortcut: &Shortcut{Skip: []string{"a"}, Take: func() bool { return true }}}}, "does not need"},
		"shortcut without Take": {Plan{{Step: s("a"), Kind: EveryBoot},
			{Step: s("b"), Kind: EveryBoot, After: []string{"a"}, Shortcut: &Shortcut{Skip: []string{"a"}}}}, "without Take"},
	} {
		err := tc.plan.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
