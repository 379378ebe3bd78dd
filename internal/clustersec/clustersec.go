// Package clustersec holds the cluster's key material: the Consul CA that
// signs the servers' RPC certificates, its compact encoding for the
// one-line user_data, and the server certificates themselves.
//
// Everything derived from the CA key is deterministic: a server's key and
// certificate are functions of the CA key, the datacenter, the node name and
// its address (HMAC-SHA256 for the key, RFC 6979 for the ECDSA signature),
// so rendering them again on the next boot writes the same bytes and
// restarts nothing. The agent and the end-to-end harness both import it.
package clustersec

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Domain is Consul's default domain; verify_server_hostname checks that a
// server's certificate names server.<datacenter>.<domain>.
const Domain = "consul"

// CAValidity is how long a new CA is valid.
const CAValidity = 20 * 365 * 24 * time.Hour

// keySize is the length of a P-256 private scalar.
const keySize = 32

// CA is the cluster's certificate authority: the certificate is public, the
// key is a secret that only Consul servers hold.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey // nil on a droplet that holds only the certificate
}

// NewCA mints a self-signed ECDSA P-256 CA valid from now for CAValidity.
func NewCA(now time.Time) (CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return CA{}, fmt.Errorf("generate CA serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: "Codelab Consul CA"},
		NotBefore:             now.Add(-time.Hour).UTC().Truncate(time.Second),
		NotAfter:              now.Add(CAValidity).UTC().Truncate(time.Second),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return CA{}, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return CA{}, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return CA{Cert: cert, Key: key}, nil
}

var b64 = base64.RawURLEncoding

// EncodeCert is the certificate's DER in URL-safe base64 without padding:
// the form ca= takes in user_data.
func EncodeCert(c *x509.Certificate) string { return b64.EncodeToString(c.Raw) }

// ErrBadCert and ErrBadKey say a ca= or ca_key= value does not decode.
var (
	ErrBadCert  = errors.New("not a CA certificate in URL-safe base64 DER")
	ErrBadKey   = errors.New("not a P-256 private key (32 bytes, URL-safe base64)")
	ErrMismatch = errors.New("the CA key does not belong to the CA certificate")
)

// DecodeCert reads EncodeCert's form and checks that it is a CA.
func DecodeCert(s string) (*x509.Certificate, error) {
	der, err := b64.DecodeString(s)
	if err != nil {
		return nil, ErrBadCert
	}
	c, err := x509.ParseCertificate(der)
	if err != nil || !c.IsCA {
		return nil, ErrBadCert
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, ErrBadCert
	}
	return c, nil
}

// EncodeKey is the private key as its 32-byte scalar in URL-safe base64
// without padding (43 characters): the form ca_key= takes.
func EncodeKey(k *ecdsa.PrivateKey) string {
	b, err := k.Bytes()
	if err != nil {
		panic(fmt.Sprintf("clustersec: encode key: %v", err))
	}
	return b64.EncodeToString(b)
}

// DecodeKey reads EncodeKey's form.
func DecodeKey(s string) (*ecdsa.PrivateKey, error) {
	b, err := b64.DecodeString(s)
	if err != nil || len(b) != keySize {
		return nil, ErrBadKey
	}
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		return nil, ErrBadKey
	}
	return k, nil
}

// KeyMatches reports whether key is the private key of cert.
func KeyMatches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && key != nil && pub.Equal(&key.PublicKey)
}

// Parse decodes a ca= value and, when keyText is not empty, a ca_key= value,
// and checks that the key belongs to the certificate.
func Parse(certText, keyText string) (CA, error) {
	cert, err := DecodeCert(certText)
	if err != nil {
		return CA{}, err
	}
	ca := CA{Cert: cert}
	if keyText == "" {
		return ca, nil
	}
	if ca.Key, err = DecodeKey(keyText); err != nil {
		return CA{}, err
	}
	if !KeyMatches(cert, ca.Key) {
		return CA{}, ErrMismatch
	}
	return ca, nil
}

// ServerName is the name verify_server_hostname expects in a server's
// certificate.
func ServerName(dc string) string { return "server." + dc + "." + Domain }

// Server is a Consul server's RPC certificate and key, in PEM.
type Server struct {
	CertPEM, KeyPEM []byte
}

// ServerCert signs the certificate of the Consul server named node in
// datacenter dc, listening on ip. Its names are server.<dc>.consul and
// localhost, and 127.0.0.1 and ip; it is valid as long as the CA and serves
// both sides of a TLS connection (servers dial each other). The same inputs
// always give the same bytes.
func (ca CA) ServerCert(dc, node, ip string) (Server, error) {
	if ca.Key == nil {
		return Server{}, errors.New("sign server certificate: no CA key (ca_key= is only on servers)")
	}
	addr := net.ParseIP(ip)
	if addr == nil {
		return Server{}, fmt.Errorf("sign server certificate: bad address %q", ip)
	}
	info := []byte("codelab consul server v1\x00" + dc + "\x00" + node + "\x00" + ip)
	key, err := deriveKey(ca.Key, info)
	if err != nil {
		return Server{}, fmt.Errorf("sign server certificate: %w", err)
	}
	serial := new(big.Int).SetBytes(mac(ca.Key, append([]byte("serial\x00"), info...))[:16])
	serial.Add(serial, big.NewInt(1))
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if !addr.Equal(ips[0]) {
		ips = append(ips, addr)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: ServerName(dc)},
		DNSNames:     []string{ServerName(dc), "localhost"},
		IPAddresses:  ips,
		NotBefore:    ca.Cert.NotBefore,
		NotAfter:     ca.Cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	// A nil random source makes the ECDSA signature deterministic (RFC 6979).
	der, err := x509.CreateCertificate(nil, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Server{}, fmt.Errorf("sign server certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Server{}, fmt.Errorf("encode server key: %w", err)
	}
	return Server{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}

// CertPEM is the CA certificate in PEM, for Consul's ca_file.
func (ca CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM is the CA key in PEM (PKCS #8), for an operator's safe keeping.
func (ca CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ReadKeyPEM reads KeyPEM's form (or a bare EncodeKey line) back.
func ReadKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return DecodeKey(string(bytes.TrimSpace(b)))
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil && k.Curve == elliptic.P256() {
			return k, nil
		}
		return nil, ErrBadKey
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, ErrBadKey
	}
	return ek, nil
}

// ReadCertPEM reads a PEM CA certificate (ca.pem) back.
func ReadCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, ErrBadCert
	}
	return DecodeCert(b64.EncodeToString(blk.Bytes))
}

// Verify reports whether cert was signed by the CA; it does not check the
// validity period (a droplet's clock is not the question here).
func (ca CA) Verify(cert *x509.Certificate) error {
	return cert.CheckSignatureFrom(ca.Cert)
}

// Sub derives a 32-byte secret from the CA key for one purpose (the ACL
// tokens, say): HMAC-SHA256 keyed with the key's scalar.
func (ca CA) Sub(purpose string) ([]byte, error) {
	if ca.Key == nil {
		return nil, errors.New("derive " + purpose + ": no CA key")
	}
	return mac(ca.Key, []byte(purpose)), nil
}

func mac(key *ecdsa.PrivateKey, msg []byte) []byte {
	b, err := key.Bytes()
	if err != nil {
		panic(fmt.Sprintf("clustersec: key bytes: %v", err))
	}
	h := hmac.New(sha256.New, b)
	h.Write(msg)
	return h.Sum(nil)
}

// deriveKey makes a P-256 key from the CA key and info; a 32-byte MAC that
// is not a valid scalar (probability about 2^-32) is retried with a counter.
func deriveKey(ca *ecdsa.PrivateKey, info []byte) (*ecdsa.PrivateKey, error) {
	for i := byte(0); i < 16; i++ {
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), mac(ca, append(append([]byte{}, info...), 0, i)))
		if err == nil {
			return k, nil
		}
	}
	return nil, errors.New("derive server key: no valid scalar")
}

// ACL tokens. The cluster's ACL secrets are derived from the CA key, so a
// server (which holds it) needs no other secret, and a client gets only its
// role's token. Each is a UUID (Consul's form of a SecretID).
const aclPurpose = "codelab acl v1"

// Names of the derived tokens.
const (
	ManagementTokenName = "management"
)

// RoleTokenName names the token of role in env.
func RoleTokenName(env, role string) string { return "role/" + env + "/" + role }

// ACLToken derives the secret of the token called name.
func (ca CA) ACLToken(name string) (string, error) {
	root, err := ca.Sub(aclPurpose)
	if err != nil {
		return "", err
	}
	h := hmac.New(sha256.New, root)
	h.Write([]byte("secret\x00" + name))
	return uuid(h.Sum(nil)), nil
}

// ACLAccessor derives the public accessor id of the token called name, so
// that creating it again finds the same token.
func (ca CA) ACLAccessor(name string) (string, error) {
	root, err := ca.Sub(aclPurpose)
	if err != nil {
		return "", err
	}
	h := hmac.New(sha256.New, root)
	h.Write([]byte("accessor\x00" + name))
	return uuid(h.Sum(nil)), nil
}

// SubToken derives a token for purpose from another token (a droplet's
// agent recovery token from its role token, say): a new secret that needs
// no new channel.
func SubToken(parent, purpose string) string {
	h := hmac.New(sha256.New, []byte(parent))
	h.Write([]byte(aclPurpose + "\x00" + purpose))
	return uuid(h.Sum(nil))
}

// uuid formats 16 bytes of b as a version 4, RFC 4122 variant UUID.
func uuid(b []byte) string {
	var u [16]byte
	copy(u[:], b)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
