package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/codelab-app/infra/internal/clustersec"
)

// The demo's Consul CA lives in the instance's state folder, next to the
// local DigitalOcean's state: droplets made later (the fault tests' extra
// servers) need its key, which no droplet keeps on disk.
const (
	caCertFile = "consul-ca.pem"
	caKeyFile  = "consul-ca-key.pem"
)

// loadCA reads the cluster's CA from the state folder; fresh (no droplet
// exists yet) mints a new one and keeps it there (key 0600).
func (c *Cluster) loadCA(fresh bool) error {
	dir := c.Opts.StateDir()
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	if fresh {
		ca, err := clustersec.NewCA(time.Now())
		if err != nil {
			return err
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("keep the demo's Consul CA: %w", err)
		}
		if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return fmt.Errorf("keep the demo's Consul CA: %w", err)
		}
		if err := os.WriteFile(certPath, ca.CertPEM(), 0o644); err != nil {
			return fmt.Errorf("keep the demo's Consul CA: %w", err)
		}
		c.ca = ca
		return nil
	}
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the running droplets' Consul CA is not in %s: run `make demo-down` and start again", dir)
	}
	if err != nil {
		return fmt.Errorf("read the demo's Consul CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return fmt.Errorf("read the demo's Consul CA key: %w", err)
	}
	cert, err := clustersec.ReadCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := clustersec.ReadKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	if !clustersec.KeyMatches(cert, key) {
		return fmt.Errorf("%s: %w", keyPath, clustersec.ErrMismatch)
	}
	c.ca = clustersec.CA{Cert: cert, Key: key}
	return nil
}

// CA is the cluster's Consul CA (with its key), once Up has booted it.
func (c *Cluster) CA() clustersec.CA { return c.ca }

// securitySettings are the ca= and ca_key= (a server) or consul_token= (a
// client: its role's token in env) settings of a line.
func (c *Cluster) securitySettings(consul, env, role string) string {
	if c.ca.Cert == nil {
		return ""
	}
	s := " ca=" + clustersec.EncodeCert(c.ca.Cert)
	if consul == "server" {
		return s + " ca_key=" + clustersec.EncodeKey(c.ca.Key)
	}
	tok, err := c.ca.ACLToken(clustersec.RoleTokenName(env, role))
	if err != nil {
		return s
	}
	return s + " consul_token=" + tok
}

// ManagementToken is the cluster's Consul management token, derived from
// its CA key as the servers derive it.
func (c *Cluster) ManagementToken() (string, error) {
	return c.ca.ACLToken(clustersec.ManagementTokenName)
}

// RoleToken is the Consul token of role in the cluster's env.
func (c *Cluster) RoleToken(role string) (string, error) {
	return c.ca.ACLToken(clustersec.RoleTokenName(c.Opts.Env, role))
}

// withToken runs args on a droplet with CONSUL_HTTP_TOKEN set to token,
// which travels on standard input (its first line), never on a command
// line; the rest of stdin goes to the command.
func (c *Cluster) withToken(ctx context.Context, n *Node, token string, stdin io.Reader, args ...string) (string, error) {
	full := append([]string{"exec", "-i", c.Docker.ContainerName(n.ID), "sh", "-c",
		`IFS= read -r CONSUL_HTTP_TOKEN && export CONSUL_HTTP_TOKEN && exec "$@"`, "with-token"}, args...)
	cmd := exec.CommandContext(ctx, "docker", full...)
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	cmd.Stdin = io.MultiReader(strings.NewReader(token+"\n"), stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("%s on %s: %w: %s", strings.Join(args[:min(len(args), 3)], " "), n.Name, err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// ConsulAdmin runs a consul command on a droplet with the management token
// (from standard input, never a command line).
func (c *Cluster) ConsulAdmin(ctx context.Context, n *Node, args ...string) (string, error) {
	tok, err := c.ManagementToken()
	if err != nil {
		return "", err
	}
	return c.withToken(ctx, n, tok, nil, append([]string{"consul"}, args...)...)
}
