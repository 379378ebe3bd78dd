package clustersec

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"regexp"
	"testing"
	"time"
)

func TestCARoundTrip(t *testing.T) {
	ca, err := NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certText, keyText := EncodeCert(ca.Cert), EncodeKey(ca.Key)
	if len(keyText) != 43 {
		t.Errorf("key is %d characters, want 43", len(keyText))
	}
	// It has to fit the 2048-byte user_data line next to everything else.
	if len(certText) > 700 {
		t.Errorf("CA certificate is %d characters; too long for the user_data line", len(certText))
	}
	got, err := Parse(certText, keyText)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(ca.Cert) || !got.Key.Equal(ca.Key) {
		t.Fatal("round trip changed the CA")
	}
	if !got.Cert.NotAfter.After(time.Now().Add(10 * 365 * 24 * time.Hour)) {
		t.Errorf("CA expires %s; want a long validity", got.Cert.NotAfter)
	}
}

func TestParseRejects(t *testing.T) {
	a, _ := NewCA(time.Now())
	b, _ := NewCA(time.Now())
	for _, tc := range []struct {
		name, cert, key string
		want            error
	}{
		{"mismatched key", EncodeCert(a.Cert), EncodeKey(b.Key), ErrMismatch},
		{"bad cert", "not-base64!", "", ErrBadCert},
		{"short key", EncodeCert(a.Cert), "AAAA", ErrBadKey},
		{"zero key", EncodeCert(a.Cert), b64.EncodeToString(make([]byte, 32)), ErrBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.cert, tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// A leaf certificate is not a CA.
	srv, _ := a.ServerCert("dc1", "n", "10.0.0.2")
	blk, _ := pem.Decode(srv.CertPEM)
	if _, err := DecodeCert(b64.EncodeToString(blk.Bytes)); !errors.Is(err, ErrBadCert) {
		t.Fatalf("leaf accepted as CA: %v", err)
	}
}

func TestServerCertIsDeterministicAndVerifies(t *testing.T) {
	ca, _ := NewCA(time.Now())
	s1, err := ca.ServerCert("nyc3", "neo4j-1", "10.132.0.2")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := ca.ServerCert("nyc3", "neo4j-1", "10.132.0.2")
	if !bytes.Equal(s1.CertPEM, s2.CertPEM) || !bytes.Equal(s1.KeyPEM, s2.KeyPEM) {
		t.Fatal("the same inputs gave different bytes: every boot would restart Consul")
	}
	s3, _ := ca.ServerCert("nyc3", "neo4j-2", "10.132.0.3")
	if bytes.Equal(s1.KeyPEM, s3.KeyPEM) {
		t.Fatal("two servers got the same key")
	}
	pair, err := tls.X509KeyPair(s1.CertPEM, s1.KeyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, name := range []string{"server.nyc3.consul", "localhost", "127.0.0.1", "10.132.0.2"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "server.fra1.consul", Roots: roots}); err == nil {
		t.Error("certificate valid for another datacenter")
	}
	other, _ := NewCA(time.Now())
	if err := other.Verify(leaf); err == nil {
		t.Error("another CA verifies the certificate")
	}
	if err := ca.Verify(leaf); err != nil {
		t.Error(err)
	}
	if ip := net.ParseIP("10.132.0.2"); !leaf.IPAddresses[1].Equal(ip) {
		t.Errorf("IPs = %v", leaf.IPAddresses)
	}
}

func TestServerCertNeedsKey(t *testing.T) {
	ca, _ := NewCA(time.Now())
	pub := CA{Cert: ca.Cert}
	if _, err := pub.ServerCert("dc1", "n", "10.0.0.2"); err == nil {
		t.Fatal("signed without a key")
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	ca, _ := NewCA(time.Now())
	p, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ReadKeyPEM(p)
	if err != nil || !k.Equal(ca.Key) {
		t.Fatalf("PEM: %v", err)
	}
	k, err = ReadKeyPEM([]byte(EncodeKey(ca.Key) + "\n"))
	if err != nil || !k.Equal(ca.Key) {
		t.Fatalf("bare: %v", err)
	}
	c, err := ReadCertPEM(ca.CertPEM())
	if err != nil || !c.Equal(ca.Cert) {
		t.Fatalf("cert PEM: %v", err)
	}
}

func TestACLTokens(t *testing.T) {
	ca, _ := NewCA(time.Now())
	other, _ := NewCA(time.Now())
	m1, err := ca.ACLToken(ManagementTokenName)
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := ca.ACLToken(ManagementTokenName)
	api, _ := ca.ACLToken(RoleTokenName("prod", "api"))
	neo, _ := ca.ACLToken(RoleTokenName("prod", "neo4j"))
	om, _ := other.ACLToken(ManagementTokenName)
	acc, _ := ca.ACLAccessor(RoleTokenName("prod", "api"))
	if m1 != m2 {
		t.Fatal("not deterministic")
	}
	seen := map[string]bool{}
	for _, tok := range []string{m1, api, neo, om, acc} {
		if seen[tok] {
			t.Fatalf("two derivations gave %s", tok)
		}
		seen[tok] = true
		if !uuidRE.MatchString(tok) {
			t.Errorf("%s is not a UUID", tok)
		}
	}
	if _, err := (CA{Cert: ca.Cert}).ACLToken(ManagementTokenName); err == nil {
		t.Error("derived a token without the key")
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
