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
	now := r.Now
	if now == nil {
		now = time.Now
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r.Events != nil {
		r.Events.Planned(r.Plan)
	}
	done := map[string]chan struct{}{}
	for _, n := range r.Plan {
		done[n.Step.Name()] = make(chan struct{})
	}
	var (
		mu      sync.Mutex
		results = map[string]Result{}
		errs    []error
		wg      sync.WaitGroup
	)
	finish := func(name string, res Result, start time.Time, err error) {
		end := now()
		var d time.Duration
		if !start.IsZero() {
			d = end.Sub(start)
		}
		mu.Lock()
		results[name] = res
		if res == Failed {
			errs = append(errs, &StepError{Step: name, Err: err})
		}
		mu.Unlock()
		if r.Events != nil {
			r.Events.Finished(name, res, end, d, err)
		}
		close(done[name])
	}
	for _, n := range r.Plan {
		wg.Add(1)
		go func(n Node) {
			defer wg.Done()
			name := n.Step.Name()
			var blockedBy []string
			for _, d := range n.After {
				select {
				case <-done[d]:
				case <-ctx.Done():
					finish(name, Canceled, time.Time{}, ctx.Err())
					return
				}
				mu.Lock()
				res := results[d]
				mu.Unlock()
				if res != OK && res != Skipped {
					blockedBy = append(blockedBy, d+" "+string(res))
				}
			}
			if len(blockedBy) > 0 {
				sort.Strings(blockedBy)
				err := fmt.Errorf("not run: needs %s", strings.Join(blockedBy, ", "))
				log.Warn("step blocked", slog.String("step", name), slog.String("why", err.Error()))
				finish(name, Blocked, time.Time{}, err)
				return
			}
			if ctx.Err() != nil {
				finish(name, Canceled, time.Time{}, ctx.Err())
				return
			}
			if n.Kind == OncePerInstance && r.Instance != nil {
				ok, err := r.Instance.Done(name)
				if err != nil {
					log.Warn("cannot tell whether a once-per-instance step already ran; running it", slog.String("step", name), slog.Any("err", err))
				}
				if ok {
					log.Info("step skipped: already done on this instance", slog.String("step", name))
					at := now()
					if r.Events != nil {
						r.Events.Started(name, at)
					}
					finish(name, Skipped, at, nil)
					return
				}
			}
			start := now()
			if r.Events != nil {
				r.Events.Started(name, start)
			}
			log.Info("step started", slog.String("step", name), slog.String("kind", string(n.Kind)))
			err := runStep(ctx, n.Step)
			if err != nil {
				res := Failed
				if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
					res = Canceled
				}
				log.Error("step failed", slog.String("step", name), slog.Duration("took", now().Sub(start)), slog.String("err", err.Error()))
				finish(name, res, start, err)
				return
			}
			if n.Kind == OncePerInstance && r.Instance != nil {
				if err := r.Instance.Mark(name); err != nil {
					log.Error("step failed", slog.String("step", name), slog.String("err", err.Error()))
					finish(name, Failed, start, fmt.Errorf("record once-per-instance step: %w", err))
					return
				}
			}
			log.Info("step done", slog.String("step", name), slog.Duration("took", now().Sub(start)))
			finish(name, OK, start, nil)
		}(n)
	}
	wg.Wait()
	if ctx.Err() != nil && len(errs) == 0 {
		return fmt.Errorf("boot interrupted: %w", ctx.Err())
	}
	return errors.Join(errs...)
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
