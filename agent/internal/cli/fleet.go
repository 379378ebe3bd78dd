package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/digitalocean/godo"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/fleet"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/internal/exitcode"
)

// DefaultDOAPIURL is production's DigitalOcean API.
const DefaultDOAPIURL = "https://api.digitalocean.com/"

// EnvDOAPIURL overrides DefaultDOAPIURL (the local DigitalOcean).
const EnvDOAPIURL = "CODELAB_DO_API_URL"

// fleetConsulTimeout bounds the fleet view's read of Consul, so that an
// unreachable Consul is reported within 2 s.
const fleetConsulTimeout = 1500 * time.Millisecond

// FleetOptions are `status --fleet`'s options.
type FleetOptions struct {
	Env      string
	Role     string
	Watch    bool
	DOAPIURL string
	// DOToken returns the read-only API token; nil means the droplet's
	// user_data do_token= (from the metadata service). "" means none.
	DOToken func(ctx context.Context) (string, error)
	// Now is the clock (tests).
	Now func() time.Time
}

// DOAPIURLFile, when it exists, names the DigitalOcean API the droplet
// uses (one line). Production droplets have none and use DefaultDOAPIURL;
// the local DigitalOcean writes it into every droplet it creates, so that
// no droplet of a test ever reaches for the real API.
const DOAPIURLFile = "/etc/codelab/do-api-url"

// doAPIURL is --do-api-url, else $CODELAB_DO_API_URL, else DOAPIURLFile,
// else production's API.
func (o *FleetOptions) doAPIURL(root fsutil.Root) string {
	if o.DOAPIURL != "" {
		return o.DOAPIURL
	}
	if v := os.Getenv(EnvDOAPIURL); v != "" {
		return v
	}
	if b, err := root.ReadFile(DOAPIURLFile); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	return DefaultDOAPIURL
}

func (o *FleetOptions) flags(f *pflag.FlagSet) {
	f.StringVar(&o.Env, "env", "", "with --fleet: only this env")
	f.StringVar(&o.Role, "role", "", "with --fleet: only this role")
	f.BoolVar(&o.Watch, "watch", false, "with --fleet: redraw on every change (Consul blocking queries) until interrupted")
	f.StringVar(&o.DOAPIURL, "do-api-url", "", "with --fleet: DigitalOcean API for the newest snapshots (default $"+EnvDOAPIURL+", else "+DOAPIURLFile+", else "+DefaultDOAPIURL+")")
}

// checkFleetFlags rejects --fleet's flags without --fleet, and --wait with
// it.
func checkFleetFlags(cmd *cobra.Command, o *StatusOptions) error {
	for _, name := range []string{"env", "role", "watch", "do-api-url"} {
		if cmd.Flags().Changed(name) && !o.Fleet {
			return exitcode.UsageError("--%s needs --fleet", name)
		}
	}
	if o.Fleet && o.Wait {
		return exitcode.UsageError("--wait does not go with --fleet; use --watch")
	}
	return nil
}

// RunFleet is `status --fleet`.
func RunFleet(ctx context.Context, g *Global, o *StatusOptions, stdio IO) error {
	c, err := consul.NewAPI(o.ConsulAddr, 0)
	if err != nil {
		return err
	}
	fo := &o.FleetOptions
	now := fo.Now
	if now == nil {
		now = func() time.Time { return time.Now().UTC() }
	}
	filter := fleet.Filter{Env: fo.Env, Role: fo.Role}
	table := isTerminal(stdio.Out)
	if o.Table != nil {
		table = *o.Table
	}
	imgs := &imageCache{o: fo, root: fsutil.Root{Dir: g.Root}}
	render := func(ctx context.Context, s fleet.Snapshot) (fleet.View, []byte, error) {
		v := fleet.Build(s, imgs.get(ctx, now()), filter, now())
		var b bytes.Buffer
		var err error
		if o.JSON {
			err = fleet.WriteJSON(&b, v)
		} else {
			err = fleet.WriteTable(&b, v)
		}
		return v, b.Bytes(), err
	}
	unreachable := func(err error) error {
		return exitcode.With(exitcode.Failed, fmt.Errorf("fleet view: Consul at %s does not answer (is the local agent running? systemctl status consul): %w", o.ConsulAddr, err))
	}
	if fo.Watch {
		// Consul down at the start is an error, as without --watch; once
		// watching, a failed query is retried.
		rctx, cancel := context.WithTimeout(ctx, fleetConsulTimeout)
		_, err := fleet.Read(rctx, c, fo.Env)
		cancel()
		if err != nil {
			return unreachable(err)
		}
		log := g.Logger(stdio.ErrOut)
		return fleet.Watch(ctx, c, fleet.WatchOptions{
			Env: fo.Env,
			Render: func(ctx context.Context, s fleet.Snapshot) ([]byte, error) {
				_, b, err := render(ctx, s)
				return b, err
			},
			Show: func(b []byte) error {
				if table && !o.JSON {
					// Clear the terminal and draw from the top.
					if _, err := io.WriteString(stdio.Out, "\x1b[H\x1b[2J"); err != nil {
						return err
					}
				}
				_, err := stdio.Out.Write(b)
				return err
			},
			OnError: func(err error) {
				log.Warn("fleet view: Consul query failed; retrying", slog.String("err", err.Error()))
			},
		})
	}

	// The snapshots are looked up while Consul is read.
	imgDone := make(chan struct{})
	go func() {
		defer close(imgDone)
		imgs.get(ctx, now())
	}()
	rctx, cancel := context.WithTimeout(ctx, fleetConsulTimeout)
	snap, err := fleet.Read(rctx, c, fo.Env)
	cancel()
	if err != nil {
		return unreachable(err)
	}
	<-imgDone
	v, b, err := render(ctx, snap)
	if err != nil {
		return err
	}
	if _, err := stdio.Out.Write(b); err != nil {
		return err
	}
	if len(v.Droplets) == 0 {
		what := fleet.Prefix + fo.Env
		if fo.Role != "" {
			what += " for role " + fo.Role
		}
		return exitcode.With(exitcode.Failed, fmt.Errorf("fleet view: no record under %s", what))
	}
	if v.ExitCode != exitcode.OK {
		return exitcode.With(v.ExitCode, errors.New(v.Summary))
	}
	return nil
}

// imageCache looks the snapshots up at most once a minute (--watch redraws
// often).
type imageCache struct {
	o    *FleetOptions
	root fsutil.Root
	at   time.Time
	imgs *fleet.Images
}

func (c *imageCache) get(ctx context.Context, now time.Time) *fleet.Images {
	if c.imgs != nil && now.Sub(c.at) < time.Minute {
		return c.imgs
	}
	c.at, c.imgs = now, c.lookup(ctx)
	return c.imgs
}

// lookup returns the account's snapshots from the API, or NoImages (judge
// from the records) with the reason.
func (c *imageCache) lookup(ctx context.Context) *fleet.Images {
	fallback := fleet.NoImages
	tokenFn := c.o.DOToken
	if tokenFn == nil {
		tokenFn = dropletDOToken
	}
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	token, err := tokenFn(tctx)
	cancel()
	if err != nil {
		return fallback("no do_token: " + err.Error())
	}
	if token == "" {
		return fallback("the droplet's user_data has no do_token")
	}
	do := godo.NewFromToken(token)
	if do.BaseURL, err = url.Parse(c.o.doAPIURL(c.root)); err != nil {
		return fallback("bad DigitalOcean API URL: " + err.Error())
	}
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	list, err := fleet.ListDOImages(lctx, do)
	if err != nil {
		return fallback(err.Error())
	}
	return fleet.NewImages(fleet.FromDigitalOcean, list)
}

// dropletDOToken reads do_token= from this droplet's user_data.
func dropletDOToken(ctx context.Context) (string, error) {
	url := metadata.DefaultURL
	if v := os.Getenv(metadata.EnvURL); v != "" {
		url = v
	}
	m, err := metadata.Client{URL: url, Timeout: time.Second, Retry: retry.Policy{Attempts: 1}}.Fetch(ctx)
	if err != nil {
		return "", err
	}
	u, err := userdata.Parse(m.UserData)
	if err != nil {
		return "", err
	}
	return u.DOToken.Reveal(), nil
}

// startFleetPublisher publishes the boot's state to Consul in the
// background (at every change and every 30 s) and returns the function
// that stops it and makes a last, bounded attempt to publish the final
// state. Nothing here can block or fail the boot.
func startFleetPublisher(ctx context.Context, log *slog.Logger, consulAddr string, rec *boot.Recorder, root fsutil.Root) (stop func()) {
	c, err := consul.NewAPI(consulAddr, 10*time.Second)
	if err != nil {
		log.Warn("fleet record will not be published", slog.String("err", err.Error()))
		return func() {}
	}
	pub := &fleet.Publisher{
		Client:     c,
		State:      rec.Snapshot,
		LastBackup: func() *time.Time { return lastBackup(root) },
		Log:        log,
	}
	rec.OnChange = func(boot.State) { pub.Changed() }
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		pub.Run(pctx)
	}()
	return func() {
		cancel()
		final := make(chan error, 1)
		go func() {
			<-done
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			final <- pub.Publish(fctx)
		}()
		select {
		case err := <-final:
			if err != nil {
				log.Warn("final fleet record not published", slog.String("err", err.Error()))
			}
		case <-time.After(6 * time.Second):
			log.Warn("final fleet record not published: Consul did not answer within 6s")
		}
	}
}
