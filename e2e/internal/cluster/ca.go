package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// tlsSettings are the ca= (and, for a server, ca_key=) settings of a line.
func (c *Cluster) tlsSettings(consul string) string {
	if c.ca.Cert == nil {
		return ""
	}
	s := " ca=" + clustersec.EncodeCert(c.ca.Cert)
	if consul == "server" {
		s += " ca_key=" + clustersec.EncodeKey(c.ca.Key)
	}
	return s
}
