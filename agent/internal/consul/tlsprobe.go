package consul

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// rpcTLS is the first byte of a Consul RPC connection that continues with a
// TLS handshake (pool.RPCTLS in Consul's source).
const rpcTLS = 0x03

// ServerPort is Consul's default server RPC port.
const ServerPort = 8300

// ForeignCAError says a Consul server presents a certificate that this
// droplet's CA did not sign: the two were given different ca= values.
type ForeignCAError struct {
	Server string // host:port
	Err    error
}

func (e *ForeignCAError) Error() string {
	return fmt.Sprintf("server %s presents a certificate not signed by this droplet's CA (ca= differs from the cluster's; every droplet of a cluster needs the same ca=): %v", e.Server, e.Err)
}

func (e *ForeignCAError) Unwrap() error { return e.Err }

// errProbed ends a probe's handshake once the server's certificate is
// judged: the probe presents no certificate of its own.
var errProbed = errors.New("probe done")

// ProbeServerCA opens a TLS RPC connection to the Consul server at addr and
// checks its certificate against roots for server.<dc>.consul. It returns a
// *ForeignCAError when the certificate is not signed by roots, nil when it
// is, and another error when the server cannot be asked (not up yet).
func ProbeServerCA(ctx context.Context, addr, dc string, roots *x509.CertPool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte{rpcTLS}); err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	var verdict error
	judged := false
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: "server." + dc + ".consul",
		// The chain is checked below, so that the verdict on the server's
		// certificate is known even though the handshake is then ended.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			judged = true
			if len(raw) == 0 {
				verdict = errors.New("no certificate")
				return errProbed
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				verdict = err
				return errProbed
			}
			inter := x509.NewCertPool()
			for _, r := range raw[1:] {
				if c, err := x509.ParseCertificate(r); err == nil {
					inter.AddCert(c)
				}
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "server." + dc + ".consul"}); err != nil {
				verdict = err
			}
			return errProbed
		},
	}
	err = tls.Client(conn, cfg).HandshakeContext(ctx)
	if !judged {
		return fmt.Errorf("probe %s: no TLS certificate received: %w", addr, err)
	}
	if verdict != nil {
		return &ForeignCAError{Server: addr, Err: verdict}
	}
	return nil
}

// ProbeServersCA asks every alive Consul server the local agent knows of
// (other than itself) for its RPC certificate, and returns the first
// *ForeignCAError. Servers that cannot be asked are skipped: not being up
// is a wait, not a wrong CA.
func (c Client) ProbeServersCA(ctx context.Context, dc string, roots *x509.CertPool) error {
	self, err := c.Self(ctx)
	if err != nil {
		return err
	}
	ms, err := c.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Status != memberAlive || !m.IsConsulServer() || m.Name == self.Node {
			continue
		}
		port := strconv.Itoa(ServerPort)
		if p := m.Tags["port"]; p != "" {
			port = p
		}
		var fe *ForeignCAError
		if err := ProbeServerCA(ctx, net.JoinHostPort(m.Addr, port), dc, roots); errors.As(err, &fe) {
			fe.Server = m.Name + " (" + fe.Server + ")"
			return fe
		}
	}
	return nil
}
