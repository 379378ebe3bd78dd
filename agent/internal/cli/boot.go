package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/codelab-app/infra/agent/internal/units"
	"github.com/codelab-app/infra/agent/internal/version"
	"github.com/codelab-app/infra/internal/exitcode"
)

// BootOptions are `codelab-agent boot`'s options.
type BootOptions struct {
	Source
	ConsulBin  string
	ConsulAddr string
	TokenFile  string
	Timeouts   boot.Timeouts
	// Notify sends sd_notify lines; nil means systemd's socket
	// ($NOTIFY_SOCKET), a no-op outside systemd.
	Notify func(state string)
}

func newBootCmd(g *Global, stdio IO) *cobra.Command {
	o := &BootOptions{Timeouts: boot.DefaultTimeouts}
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Take the droplet from first boot to its role's containers running and healthy",
		Long: `boot runs the role's plan as named steps. Independent steps overlap (image
pulls start as soon as user_data is parsed and do not wait for Consul); a
failed step stops only the steps that need it.

  fetch-metadata   every boot         the droplet's metadata
  parse-userdata   every boot         the one-line user_data; renders in memory
  render           every boot         validate and swap in Consul, consul-template, Compose files
  registry-login   once per instance  /root/.docker/config.json (0600) from registry_token=
  docker           every boot         docker.service enabled and active (D-Bus)
  units            every boot         consul, consul-template enabled and active; restarted
                                      only when render changed their config
  consul-ready     every boot         the local agent answers and a leader exists; a server
                                      whose certificate this droplet's CA did not sign fails it
  consul-acl       every boot         servers: the ACL policies and role tokens exist (idempotent)
  pull-images      every boot         the Compose file's images, concurrently; an image
                                      already present at the registry's digest is kept;
                                      images baked into the droplet's image for this
                                      role, registry= and version= (` + boot.BakedImagesFile + `)
                                      are used without contacting any registry
  compose-up       every boot         docker compose -p ROLE up -d --wait --pull never,
                                      once consul-template has rendered the env file;
                                      on a reboot (the last completed boot, recorded in
                                      ` + boot.CompletedFile + `, was for this
                                      droplet and user_data) at once from the env files
                                      it rendered, without waiting for Consul

Once-per-instance steps are keyed on droplet_id (` + boot.InstanceFile + `): a
droplet made from a snapshot of another droplet runs them again. Every step's
start, duration, result and error go to ` + boot.StateFile + `, written
atomically after every step; ` + "`codelab-agent status`" + ` reads it. Under systemd
(Type=notify) the current step shows in ` + "`systemctl status codelab-agent`" + `.

` + exitcode.Doc,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunBoot(cmd.Context(), g, o, stdio)
		},
	}
	o.Source.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.ConsulBin, "consul", "", "consul binary used by validation (default: consul on PATH)")
	f.StringVar(&o.ConsulAddr, "consul-addr", consul.DefaultAddr, "the local Consul agent's HTTP address")
	f.StringVar(&o.TokenFile, "registry-token-file", boot.RegistryTokenFile, "registry token used when user_data has no registry_token=")
	f.DurationVar(&o.Timeouts.Unit, "unit-timeout", o.Timeouts.Unit, "how long each unit may take to become active")
	f.DurationVar(&o.Timeouts.Consul, "consul-timeout", o.Timeouts.Consul, "how long to wait for Consul and a leader (0: as long as it takes)")
	f.DurationVar(&o.Timeouts.Env, "env-timeout", o.Timeouts.Env, "how long to wait for consul-template to render the role's env file (0: as long as it takes)")
	f.DurationVar(&o.Timeouts.Compose, "compose-timeout", o.Timeouts.Compose, "how long compose up --wait may take")
	return cmd
}

// RunBoot is the boot command: one boot at a time (the boot lock), spaced
// out after a failed attempt, the role's plan run and its outcome recorded.
func RunBoot(ctx context.Context, g *Global, o *BootOptions, stdio IO) error {
	log := g.Logger(stdio.ErrOut)
	root := fsutil.Root{Dir: g.Root}
	notify := o.notifier()
	// One boot at a time, and a lock whose holder status can test: the
	// kernel drops it when this process dies, however it dies.
	unlock, err := fsutil.Lock(ctx, root.Path(boot.LockFile), func() {
		log.Info("the boot lock is held (another boot, or a fleet record being published); waiting for it")
	})
	if err != nil {
		return fmt.Errorf("take the boot lock: %w", err)
	}
	defer unlock()
	rec, delay := newBootRecorder(root, notify)
	stopPublisher := startFleetPublisher(ctx, log, o.ConsulAddr, rec, root)
	if delay > 0 {
		if err := backoff(ctx, rec, log, delay); err != nil {
			stopPublisher()
			return err
		}
	}
	facts := &boot.Facts{}
	deps, closeDeps, err := o.deps(ctx, root, rec, facts, log)
	if err != nil {
		stopPublisher()
		return err
	}
	defer closeDeps()
	if rec.Snapshot().PreviousError == "" {
		// An attempt that retries a failed one takes the first-boot path:
		// waiting for Consul and the env files it renders.
		deps.Previous = boot.ReadCompleted(root)
	}
	runner := &boot.Runner{
		Plan:     boot.NewPlan(deps),
		Instance: &boot.InstanceStore{Root: root, ID: func() string { return facts.Meta.DropletID }},
		Events:   rec,
		Log:      log,
		Now:      func() time.Time { return time.Now().UTC() },
	}
	log.Info("boot started", slog.String("version", version.String()))
	bootErr := runner.Run(ctx)
	if bootErr == nil {
		if err := boot.WriteCompleted(root, facts, time.Now().UTC()); err != nil {
			log.Warn("the next boot will wait for Consul as a first boot does", slog.String("err", err.Error()))
		}
	}
	st := rec.Finish(bootErr)
	if bootErr == nil {
		// Under Type=notify, READY completes the start job. A failed boot
		// sends none: its non-zero exit fails the job, so `systemctl start`
		// reports the failure and the unit shows failed.
		notify("READY=1")
	}
	stopPublisher() // the final record, within 5 s; the boot's result is already sent
	if err := rec.Err(); err != nil {
		log.Error("state file not written", slog.String("err", err.Error()))
		if bootErr == nil {
			bootErr = err
		}
	}
	log.Info("boot finished", slog.String("result", st.Result), slog.Duration("took", time.Duration(st.DurationMS)*time.Millisecond))
	if bootErr != nil {
		return fmt.Errorf("boot failed (see `codelab-agent status`): %w", bootErr)
	}
	fmt.Fprintf(stdio.Out, "ready: role %s, droplet %s, %s\n", st.Role, st.DropletID, time.Duration(st.DurationMS)*time.Millisecond)
	return nil
}

// notifier sends sd_notify lines: o.Notify, else systemd's socket
// ($NOTIFY_SOCKET), a no-op outside systemd.
func (o *BootOptions) notifier() func(string) {
	if o.Notify != nil {
		return o.Notify
	}
	return func(state string) { _, _ = daemon.SdNotify(false, state) }
}

// newBootRecorder starts this attempt's state, and says how long to wait
// first when the previous attempt of this kernel boot failed.
func newBootRecorder(root fsutil.Root, notify func(string)) (*boot.Recorder, time.Duration) {
	base := boot.State{
		Image:        readImage(root),
		AgentVersion: version.String(),
		BootID:       BootID(),
		PID:          os.Getpid(),
		StartedAt:    time.Now().UTC(),
		Attempt:      1,
	}
	delay := retryDelay(root, &base, time.Now())
	rec := boot.NewRecorder(root, base)
	rec.Notify = notify
	rec.Now = func() time.Time { return time.Now().UTC() }
	return rec, delay
}

// deps connects the plan to the world: validators, systemd, Docker, Consul
// and the metadata service. closeDeps releases the connections.
func (o *BootOptions) deps(ctx context.Context, root fsutil.Root, rec *boot.Recorder, facts *boot.Facts, log *slog.Logger) (d boot.Deps, closeDeps func(), err error) {
	validators := []render.Validator{render.TemplateValidator{}, render.ComposeValidator{}}
	switch cv, err := render.NewConsulValidator(o.ConsulBin); {
	case errors.Is(err, render.ErrNoConsul):
		log.Warn("consul validate skipped: no consul binary installed")
	case err != nil:
		return d, nil, exitcode.UsageError("%w", err)
	default:
		validators = append(validators, cv)
	}
	docker, err := containers.NewClient()
	if err != nil {
		return d, nil, err
	}
	closers := []func(){func() { docker.Close() }}
	var um boot.Units
	if m, err := units.Dial(ctx); err != nil {
		um = failingUnits{err}
	} else {
		m.Log = log
		closers = append(closers, m.Close)
		um = m
	}
	cc := consul.New(o.ConsulAddr)
	d = boot.Deps{
		Facts: facts, Rec: rec, Root: root, Log: log,
		Fetch:        o.fetchMetadata,
		UserDataLine: o.userDataLine(),
		Validators:   validators,
		Units:        um,
		Consul:       cc,
		Docker:       docker,
		TokenFile:    o.TokenFile,
		Timeouts:     o.Timeouts,
		KVKeys:       cc.KVKeys,
		Firewall:     applySystemFirewall,
	}
	return d, func() {
		for _, c := range closers {
			c()
		}
	}, nil
}

// fetchMetadata makes one bounded attempt; the step retries (and says it
// waits) for as long as the service does not answer.
func (o *BootOptions) fetchMetadata(ctx context.Context) (metadata.Metadata, error) {
	if o.MetadataFile != "" {
		return metadata.ReadFile(o.MetadataFile)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return metadata.Client{URL: o.MetadataURL}.Fetch(ctx)
}

// userDataLine reads --user-data-file; nil means the metadata's user_data.
func (o *BootOptions) userDataLine() func() (string, error) {
	if o.UserDataFile == "" {
		return nil
	}
	return func() (string, error) {
		b, err := os.ReadFile(o.UserDataFile)
		if err != nil {
			return "", fmt.Errorf("read user_data file: %w", err)
		}
		return string(b), nil
	}
}

// failingUnits stands in for systemd when D-Bus is unreachable, so the unit
// steps fail with the reason while the rest of the plan still runs.
type failingUnits struct{ err error }

func (f failingUnits) Converge(context.Context, []units.Want, time.Duration) ([]units.Outcome, error) {
	return nil, f.err
}

// BootID is the kernel's id for this boot.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readImage(root fsutil.Root) string {
	b, err := root.ReadFile(boot.ImageFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Retry pacing: systemd restarts a failed boot (Restart=on-failure); the
// agent itself spaces the attempts out, doubling from firstRetry up to
// maxRetry, counted since the kernel booted.
const (
	firstRetry = 5 * time.Second
	maxRetry   = 2 * time.Minute
)

// retryDelay reads the previous attempt's state. When this kernel boot
// already ran a boot that failed or died, it counts this one as the next
// attempt, records the previous error in base and returns how long to wait
// before trying again.
func retryDelay(root fsutil.Root, base *boot.State, now time.Time) time.Duration {
	prev, err := boot.ReadState(root)
	if err != nil || prev.BootID == "" || prev.BootID != base.BootID {
		return 0
	}
	base.Attempt = max(prev.Attempt, 1) + 1
	var ended time.Time
	switch prev.Result {
	case boot.BootFailed:
		base.PreviousError = prev.Error
		if prev.FinishedAt != nil {
			ended = *prev.FinishedAt
		}
	case boot.BootRunning:
		base.PreviousError = "the boot ended without finishing (killed, or the agent crashed)"
		ended = prev.StartedAt
	default:
		return 0
	}
	d := firstRetry << min(base.Attempt-2, 10)
	d = min(d, maxRetry) - now.Sub(ended)
	return max(d, 0)
}

// backoff waits before a retried attempt, saying so in the state file.
func backoff(ctx context.Context, rec *boot.Recorder, log *slog.Logger, d time.Duration) error {
	st := rec.Snapshot()
	log.Warn("the previous boot failed; waiting before trying again",
		slog.Int("attempt", st.Attempt), slog.Duration("wait", d), slog.String("previous", st.PreviousError))
	_ = rec.Update(func(s *boot.State) {
		s.Status = fmt.Sprintf("attempt %d in %s (the last one failed)", s.Attempt, d.Round(time.Second))
	})
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("wait before boot attempt %d: %w", st.Attempt, ctx.Err())
	case <-t.C:
		return nil
	}
}
