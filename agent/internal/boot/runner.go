// Package boot runs a role's boot plan: named steps, each once-per-instance
// or every-boot, with dependencies between them. Independent steps overlap;
// a failed step stops only the steps that depend on it. Every step's start,
// duration, result and error are recorded in the state file.
package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Step is one named piece of the boot.
type Step interface {
	Name() string
	Run(ctx context.Context) error
}

// Kind says how often a step runs.
type Kind string

const (
	// EveryBoot steps converge the droplet on every boot; they must be
	// idempotent (a reboot that changes nothing restarts nothing).
	EveryBoot Kind = "every-boot"
	// OncePerInstance steps run once per droplet_id: a droplet made from a
	// snapshot of another droplet is a new instance and runs them again.
	OncePerInstance Kind = "once-per-instance"
)

// Node places a step in a plan.
type Node struct {
	Step  Step
	Kind  Kind
	After []string // names of the steps this one needs
	// Shortcut, when set, may let the step start without some of the
	// steps in After.
	Shortcut *Shortcut
}

// Shortcut lets a step start before some of the steps it needs have
// finished, when something only known during the boot says it may (a
// reboot starts the containers from the env files the last boot rendered
// without waiting for Consul). Skip names steps of After; once every
// other step of After has succeeded, Take is asked once: true starts the
// step at once, false waits for Skip as usual. The skipped steps still
// run, and the boot is not done until they are.
type Shortcut struct {
	Skip []string
	Take func() bool
}

// Plan is a set of steps and their dependencies.
type Plan []Node

// Validate checks names are unique, dependencies exist and there is no cycle.
func (p Plan) Validate() error {
	idx := map[string]int{}
	for i, n := range p {
		if n.Step == nil {
			return fmt.Errorf("plan: node %d has no step", i)
		}
		name := n.Step.Name()
		if _, dup := idx[name]; dup {
			return fmt.Errorf("plan: step %q appears twice", name)
		}
		if n.Kind != EveryBoot && n.Kind != OncePerInstance {
			return fmt.Errorf("plan: step %q has kind %q; want %s or %s", name, n.Kind, EveryBoot, OncePerInstance)
		}
		idx[name] = i
	}
	for _, n := range p {
		for _, d := range n.After {
			if _, ok := idx[d]; !ok {
				return fmt.Errorf("plan: step %q needs unknown step %q", n.Step.Name(), d)
			}
		}
		if sc := n.Shortcut; sc != nil {
			if sc.Take == nil {
				return fmt.Errorf("plan: step %q has a shortcut without Take", n.Step.Name())
			}
			for _, d := range sc.Skip {
				if !slices.Contains(n.After, d) {
					return fmt.Errorf("plan: step %q's shortcut skips %q, which it does not need", n.Step.Name(), d)
				}
			}
		}
	}
	// Depth-first search for a cycle.
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(p))
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		color[i] = grey
		path = append(path, p[i].Step.Name())
		for _, d := range p[i].After {
			j := idx[d]
			switch color[j] {
			case grey:
				return fmt.Errorf("plan: dependency cycle: %s -> %s", strings.Join(path, " -> "), d)
			case white:
				if err := visit(j, path); err != nil {
					return err
				}
			}
		}
		color[i] = black
		return nil
	}
	for i := range p {
		if color[i] == white {
			if err := visit(i, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Result is a step's outcome.
type Result string

const (
	Pending  Result = "pending"
	Running  Result = "running"
	OK       Result = "ok"
	Failed   Result = "failed"
	Blocked  Result = "blocked"  // a step it needs failed or was blocked
	Skipped  Result = "skipped"  // once-per-instance and already done on this instance
	Canceled Result = "canceled" // the boot was interrupted first
)

// Instance remembers which once-per-instance steps already succeeded on
// this droplet.
type Instance interface {
	Done(step string) (bool, error)
	Mark(step string) error
}

// Events receives the runner's progress. The Recorder implements it.
type Events interface {
	Planned(p Plan)
	Started(step string, at time.Time)
	Finished(step string, r Result, at time.Time, d time.Duration, err error)
}

// Runner runs a plan.
type Runner struct {
	Plan     Plan
	Instance Instance // nil: every once-per-instance step runs
	Events   Events   // nil: nothing recorded
	Log      *slog.Logger
	Now      func() time.Time
}

// StepError says which step failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Run runs every step as soon as the steps it needs have succeeded (or were
// skipped as already done). It returns nil when every step succeeded or was
// skipped, and otherwise the failed steps' errors joined.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Plan.Validate(); err != nil {
		return err
	}
	b := &run{Runner: r, now: r.Now, log: r.Log, done: map[string]chan struct{}{}, results: map[string]Result{}}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if r.Events != nil {
		r.Events.Planned(r.Plan)
	}
	for _, n := range r.Plan {
		b.done[n.Step.Name()] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, n := range r.Plan {
		wg.Go(func() { b.runNode(ctx, n) })
	}
	wg.Wait()
	if ctx.Err() != nil && len(b.errs) == 0 {
		return fmt.Errorf("boot interrupted: %w", ctx.Err())
	}
	return errors.Join(b.errs...)
}

// run is one Run of a Runner: each step's goroutine waits on the done
// channels of the steps it needs and reads their results.
type run struct {
	*Runner
	now  func() time.Time
	log  *slog.Logger
	done map[string]chan struct{} // closed when the step has a result

	mu      sync.Mutex
	results map[string]Result
	errs    []error
}

// runNode takes one step from waiting to its result.
func (b *run) runNode(ctx context.Context, n Node) {
	name := n.Step.Name()
	if res, err := b.awaitNeeds(ctx, n); res != "" {
		b.finish(name, res, time.Time{}, err)
		return
	}
	if b.alreadyDone(n) {
		at := b.now()
		b.started(name, at)
		b.finish(name, Skipped, at, nil)
		return
	}
	start := b.now()
	b.started(name, start)
	res, err := b.execute(ctx, n, start)
	b.finish(name, res, start, err)
}

// awaitNeeds waits for the steps n needs. It returns an empty Result when n
// may run, Blocked when a step it needs did not succeed, and Canceled when
// the boot was interrupted first.
func (b *run) awaitNeeds(ctx context.Context, n Node) (Result, error) {
	var blockedBy []string
	wait := func(needs []string) error {
		for _, d := range needs {
			select {
			case <-b.done[d]:
			case <-ctx.Done():
				return ctx.Err()
			}
			b.mu.Lock()
			res := b.results[d]
			b.mu.Unlock()
			if res != OK && res != Skipped {
				blockedBy = append(blockedBy, d+" "+string(res))
			}
		}
		return nil
	}
	needs, skippable := n.After, []string(nil)
	if n.Shortcut != nil {
		needs, skippable = nil, n.Shortcut.Skip
		for _, d := range n.After {
			if !slices.Contains(skippable, d) {
				needs = append(needs, d)
			}
		}
	}
	if err := wait(needs); err != nil {
		return Canceled, err
	}
	if len(skippable) > 0 && len(blockedBy) == 0 && ctx.Err() == nil {
		if n.Shortcut.Take() {
			b.log.Info("step starts without waiting for some of its needs", slog.String("step", n.Step.Name()), slog.Any("skipped", skippable))
			skippable = nil
		}
	}
	if err := wait(skippable); err != nil {
		return Canceled, err
	}
	if len(blockedBy) > 0 {
		sort.Strings(blockedBy)
		err := fmt.Errorf("not run: needs %s", strings.Join(blockedBy, ", "))
		b.log.Warn("step blocked", slog.String("step", n.Step.Name()), slog.String("why", err.Error()))
		return Blocked, err
	}
	if ctx.Err() != nil {
		return Canceled, ctx.Err()
	}
	return "", nil
}

// alreadyDone reports whether n is once-per-instance and already succeeded
// on this instance. When the Instance cannot tell, the step runs.
func (b *run) alreadyDone(n Node) bool {
	if n.Kind != OncePerInstance || b.Instance == nil {
		return false
	}
	name := n.Step.Name()
	ok, err := b.Instance.Done(name)
	if err != nil {
		b.log.Warn("cannot tell whether a once-per-instance step already ran; running it", slog.String("step", name), slog.Any("err", err))
	}
	if ok {
		b.log.Info("step skipped: already done on this instance", slog.String("step", name))
	}
	return ok
}

// execute runs n's step, started at start, and records a once-per-instance
// step as done on this instance when it succeeded.
func (b *run) execute(ctx context.Context, n Node, start time.Time) (Result, error) {
	name := n.Step.Name()
	b.log.Info("step started", slog.String("step", name), slog.String("kind", string(n.Kind)))
	if err := runStep(ctx, n.Step); err != nil {
		res := Failed
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			res = Canceled
		}
		b.log.Error("step failed", slog.String("step", name), slog.Duration("took", b.now().Sub(start)), slog.String("err", err.Error()))
		return res, err
	}
	if n.Kind == OncePerInstance && b.Instance != nil {
		if err := b.Instance.Mark(name); err != nil {
			b.log.Error("step failed", slog.String("step", name), slog.String("err", err.Error()))
			return Failed, fmt.Errorf("record once-per-instance step: %w", err)
		}
	}
	b.log.Info("step done", slog.String("step", name), slog.Duration("took", b.now().Sub(start)))
	return OK, nil
}

func (b *run) started(name string, at time.Time) {
	if b.Events != nil {
		b.Events.Started(name, at)
	}
}

// finish records a step's result, reports it, and releases the steps that
// wait for it. A zero start means the step never started.
func (b *run) finish(name string, res Result, start time.Time, err error) {
	end := b.now()
	var d time.Duration
	if !start.IsZero() {
		d = end.Sub(start)
	}
	b.mu.Lock()
	b.results[name] = res
	if res == Failed {
		b.errs = append(b.errs, &StepError{Step: name, Err: err})
	}
	b.mu.Unlock()
	if b.Events != nil {
		b.Events.Finished(name, res, end, d, err)
	}
	close(b.done[name])
}

// runStep runs a step and turns a panic into its error, so one broken step
// cannot take the whole boot (and its state file) down with it.
func runStep(ctx context.Context, s Step) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return s.Run(ctx)
}

// Hinted is an error that carries the command an operator should run to
// investigate it. status prints the hint next to the error.
type Hinted struct {
	Err  error
	Hint string
}

func (h *Hinted) Error() string { return h.Err.Error() }
func (h *Hinted) Unwrap() error { return h.Err }

// WithHint attaches an investigation command to err.
func WithHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Hinted{Err: err, Hint: hint}
}

// HintOf returns the hint carried by err, if any.
func HintOf(err error) string {
	var h *Hinted
	if errors.As(err, &h) {
		return h.Hint
	}
	return ""
}

// Func is a Step made of a name and a function, for small steps and tests.
type Func struct {
	StepName string
	Fn       func(ctx context.Context) error
}

func (f Func) Name() string                  { return f.StepName }
func (f Func) Run(ctx context.Context) error { return f.Fn(ctx) }
