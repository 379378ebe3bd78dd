package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/internal/exitcode"
)

// UserdataOptions are `codelab-agent userdata`'s options.
type UserdataOptions struct {
	Check bool
	File  string

	Role, Env, Consul, Join, DC, Version, Registry string
	Bootstrap                                      int
	// Secrets come from the environment, never from flags, so they do not
	// show in `ps` or shell history.
	Getenv func(string) string
}

// Secret environment variables read by `userdata`.
const (
	EnvGossip        = "CODELAB_GOSSIP_KEY"
	EnvRegistryToken = "CODELAB_REGISTRY_TOKEN"
	EnvDOToken       = "CODELAB_DO_TOKEN"
)

func newUserdataCmd(_ *Global, stdio IO) *cobra.Command {
	o := &UserdataOptions{Getenv: os.Getenv}
	cmd := &cobra.Command{
		Use:   "userdata",
		Short: "Generate a one-line user_data from flags, or check one (--check)",
		Long: `userdata generates the one-line user_data that Terraform gives a droplet, or
with --check validates one (from --file or standard input) and prints it with
its secrets redacted.

Secrets are read from the environment, never from flags:
  ` + EnvGossip + `       gossip=          (required; ` + "`consul keygen`" + `)
  ` + EnvRegistryToken + `   registry_token=
  ` + EnvDOToken + `         do_token=        (required with join=tag:)

` + userdata.Help() + "\n" + exitcode.Doc,
		Example: `  CODELAB_GOSSIP_KEY=$(consul keygen) CODELAB_DO_TOKEN=$DO_READ_TOKEN \
    codelab-agent userdata --role api --env prod
  codelab-agent userdata --check --file user_data.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunUserdata(cmd.Context(), o, stdio)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Check, "check", false, "validate a line instead of generating one")
	f.StringVar(&o.File, "file", "", "with --check: read the line from this file (default: standard input)")
	f.StringVar(&o.Role, "role", "", "role: "+strings.Join(userdata.Roles, ", "))
	f.StringVar(&o.Env, "env", "", "environment (default "+userdata.DefaultEnv+")")
	f.StringVar(&o.Consul, "consul", "", "consul mode: server or client (default client)")
	f.IntVar(&o.Bootstrap, "bootstrap", 0, "servers expected (servers only; default 3)")
	f.StringVar(&o.Join, "join", "", "tag:NAME or a comma list of addresses (default tag:"+userdata.DefaultJoinTag+")")
	f.StringVar(&o.DC, "dc", "", "Consul datacenter (default: the droplet's region)")
	f.StringVar(&o.Version, "version", "", "application image tag (default "+userdata.DefaultVersion+")")
	f.StringVar(&o.Registry, "registry", "", "image registry (default "+userdata.DefaultRegistry+")")
	return cmd
}

// RunUserdata is the userdata command.
func RunUserdata(_ context.Context, o *UserdataOptions, stdio IO) error {
	if o.Check {
		var (
			b   []byte
			err error
		)
		if o.File != "" {
			b, err = os.ReadFile(o.File)
		} else {
			b, err = io.ReadAll(io.LimitReader(stdio.In, 1<<20))
		}
		if err != nil {
			return fmt.Errorf("read user_data: %w", err)
		}
		c, err := userdata.Parse(string(b))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Out, "ok: %s\n", c.Redacted())
		return nil
	}
	if o.Role == "" {
		return exitcode.UsageError("--role is required (one of %s)", strings.Join(userdata.Roles, ", "))
	}
	parts := []string{userdata.Marker, userdata.Version}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("role", o.Role)
	add("env", o.Env)
	add("consul", o.Consul)
	if o.Bootstrap != 0 {
		add("bootstrap", strconv.Itoa(o.Bootstrap))
	}
	add("join", o.Join)
	add("dc", o.DC)
	add("version", o.Version)
	add("registry", o.Registry)
	add("gossip", o.Getenv(EnvGossip))
	add("registry_token", o.Getenv(EnvRegistryToken))
	add("do_token", o.Getenv(EnvDOToken))
	for _, p := range parts {
		if strings.ContainsAny(p, " \t\n") {
			return exitcode.UsageError("a value contains white space: %s", strings.SplitN(p, "=", 2)[0])
		}
	}
	c, err := userdata.Parse(strings.Join(parts, " "))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdio.Out, c.Line())
	return nil
}
