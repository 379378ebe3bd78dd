package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/internal/clustersec"
	"github.com/codelab-app/infra/internal/exitcode"
)

// UserdataOptions are `codelab-agent userdata`'s options.
type UserdataOptions struct {
	Check bool
	File  string
	// NewCA is a folder to mint a new cluster CA into (ca.pem, ca-key.pem).
	NewCA string
	// CAFile is the cluster's CA certificate (ca.pem, public); CAKeyFile
	// its key, needed for servers. The key may instead come from the
	// environment (EnvCAKey); never from a flag's value.
	CAFile, CAKeyFile string
	// ManagementTokenFile: write the cluster's Consul management token,
	// derived from the CA key, to this file (0600) and exit.
	ManagementTokenFile string

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
	EnvCAKey         = "CODELAB_CA_KEY"
	EnvConsulToken   = "CODELAB_CONSUL_TOKEN"
)

// Files --new-ca writes.
const (
	CACertName = "ca.pem"
	CAKeyName  = "ca-key.pem"
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
  ` + EnvCAKey + `           ca_key=          (servers; or --ca-key-file)
  ` + EnvConsulToken + `     consul_token=    (clients; derived from the CA key when it is given)

Consul's RPC runs over TLS with the cluster's own CA. --new-ca DIR mints one
for a new cluster: DIR/` + CACertName + ` (public, 0644) and DIR/` + CAKeyName + `
(secret, 0600; keep it safe: servers sign their certificates with it). Every
line then takes --ca DIR/` + CACertName + `; a server's line also the key.
Consul runs with ACLs (default deny): a client's line carries its role's
token (consul_token=), derived from the CA key; a server derives its own.

` + userdata.Help() + "\n" + exitcode.Doc,
		Example: `  codelab-agent userdata --new-ca ./cluster-ca
  CODELAB_GOSSIP_KEY=$(consul keygen) CODELAB_DO_TOKEN=$DO_READ_TOKEN \
    codelab-agent userdata --role api --env prod --ca ./cluster-ca/ca.pem --ca-key-file ./cluster-ca/ca-key.pem
  CODELAB_GOSSIP_KEY=... CODELAB_DO_TOKEN=... codelab-agent userdata --role neo4j \
    --consul server --ca ./cluster-ca/ca.pem --ca-key-file ./cluster-ca/ca-key.pem
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
	f.StringVar(&o.NewCA, "new-ca", "", "mint a new cluster CA into this folder ("+CACertName+", "+CAKeyName+") and exit")
	f.StringVar(&o.CAFile, "ca", "", "the cluster's CA certificate ("+CACertName+"; required)")
	f.StringVar(&o.CAKeyFile, "ca-key-file", "", "the CA's key ("+CAKeyName+"; servers only; or env "+EnvCAKey+")")
	f.StringVar(&o.ManagementTokenFile, "management-token-file", "", "with --ca and the CA key: write the cluster's Consul management token to this file (0600) and exit")
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
	if o.NewCA != "" {
		return newCA(o.NewCA, stdio)
	}
	if o.ManagementTokenFile != "" {
		return writeManagementToken(o, stdio)
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
	ca, err := o.loadCA()
	if err != nil {
		return err
	}
	if ca.Cert != nil {
		add("ca", clustersec.EncodeCert(ca.Cert))
	}
	if ca.Key != nil && o.Consul == userdata.ConsulServer {
		add("ca_key", clustersec.EncodeKey(ca.Key))
	}
	if o.Consul != userdata.ConsulServer {
		tok := o.Getenv(EnvConsulToken)
		if tok == "" && ca.Key != nil {
			env := o.Env
			if env == "" {
				env = userdata.DefaultEnv
			}
			if tok, err = ca.ACLToken(clustersec.RoleTokenName(env, o.Role)); err != nil {
				return err
			}
		}
		add("consul_token", tok)
	}
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

// loadCA reads --ca and the CA key (--ca-key-file or the environment) and
// checks that they belong together.
func (o *UserdataOptions) loadCA() (clustersec.CA, error) {
	if o.CAFile == "" {
		return clustersec.CA{}, nil // Parse says ca= is missing
	}
	b, err := os.ReadFile(o.CAFile)
	if err != nil {
		return clustersec.CA{}, fmt.Errorf("read the CA certificate: %w", err)
	}
	cert, err := clustersec.ReadCertPEM(b)
	if err != nil {
		return clustersec.CA{}, fmt.Errorf("%s: %w", o.CAFile, err)
	}
	ca := clustersec.CA{Cert: cert}
	var keyText []byte
	src := ""
	switch {
	case o.CAKeyFile != "":
		if keyText, err = os.ReadFile(o.CAKeyFile); err != nil {
			return clustersec.CA{}, fmt.Errorf("read the CA key: %w", err)
		}
		src = o.CAKeyFile
	case o.Getenv(EnvCAKey) != "":
		keyText, src = []byte(o.Getenv(EnvCAKey)), EnvCAKey
	default:
		return ca, nil
	}
	if ca.Key, err = clustersec.ReadKeyPEM(keyText); err != nil {
		return clustersec.CA{}, fmt.Errorf("the CA key from %s: %w", src, err)
	}
	if !clustersec.KeyMatches(cert, ca.Key) {
		return clustersec.CA{}, fmt.Errorf("the CA key from %s: %w (%s)", src, clustersec.ErrMismatch, o.CAFile)
	}
	return ca, nil
}

// newCA mints a cluster CA into dir; it never overwrites a CA.
func newCA(dir string, stdio IO) error {
	certPath, keyPath := filepath.Join(dir, CACertName), filepath.Join(dir, CAKeyName)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: a CA is not replaced (every droplet of its cluster trusts it); choose another folder", p)
		}
	}
	ca, err := clustersec.NewCA(time.Now())
	if err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if _, err := fsutil.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("write the CA key: %w", err)
	}
	if _, err := fsutil.WriteFile(certPath, ca.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("write the CA certificate: %w", err)
	}
	fmt.Fprintf(stdio.Out, "new cluster CA, valid until %s:\n  %s (public: --ca)\n  %s (secret, 0600: --ca-key-file, servers only)\n",
		ca.Cert.NotAfter.Format("2006-01-02"), certPath, keyPath)
	return nil
}

// writeManagementToken derives the cluster's management token from the CA
// key and writes it to a new 0600 file, for CONSUL_HTTP_TOKEN_FILE: never
// to standard output.
func writeManagementToken(o *UserdataOptions, stdio IO) error {
	ca, err := o.loadCA()
	if err != nil {
		return err
	}
	if ca.Key == nil {
		return exitcode.UsageError("--management-token-file needs --ca and the CA key (--ca-key-file or %s)", EnvCAKey)
	}
	tok, err := ca.ACLToken(clustersec.ManagementTokenName)
	if err != nil {
		return err
	}
	if _, err := fsutil.WriteFile(o.ManagementTokenFile, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the management token: %w", err)
	}
	fmt.Fprintf(stdio.Out, "wrote %s (0600): CONSUL_HTTP_TOKEN_FILE=%s consul kv put ...\n", o.ManagementTokenFile, o.ManagementTokenFile)
	return nil
}
