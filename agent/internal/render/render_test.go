package render

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/tools/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const testGossip = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="

func sampleMeta(t *testing.T, host, ip string) metadata.Metadata {
	t.Helper()
	m, err := metadata.ReadFile("../metadata/testdata/droplet.json")
	if err != nil {
		t.Fatal(err)
	}
	m.Hostname, m.PrivateIPv4 = host, ip
	return m
}

func mustParse(t *testing.T, line string) userdata.Config {
	t.Helper()
	c, err := userdata.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dump is the golden form of a render: every file with its path and mode.
func dump(files []File) []byte {
	var b bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&b, "=== %s (%04o, %s)\n%s", f.Path, f.Mode.Perm(), f.Consumer, f.Data)
		if !bytes.HasSuffix(f.Data, []byte("\n")) {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("render differs from %s (run go test -update if the change is intended)\n--- got\n%s", path, got)
	}
}

var goldenCases = []struct {
	name, host, ip, line string
}{
	{"neo4j-server", "neo4j-1", "10.132.0.2",
		"#codelab v1 role=neo4j consul=server bootstrap=3 join=10.132.0.2,10.132.0.3,10.132.0.4 version=5.20.0 gossip=" + testGossip + " " + testenv.ServerTLS},
	{"api-server-tagjoin", "consul-api-1", "10.132.0.3",
		"#codelab v1 role=api env=staging consul=server bootstrap=3 dc=fra1 do_token=dop_v1_golden0123456789 gossip=" + testGossip + " " + testenv.ServerTLS},
	{"api-client", "api-1", "10.132.0.5",
		"#codelab v1 role=api consul=client join=10.132.0.2,10.132.0.3,10.132.0.4 version=1.4.2 registry=registry.digitalocean.com/codelab gossip=" + testGossip + " " + testenv.ClientTLS},
	{"web-client", "web-1", "10.132.0.6",
		"#codelab v1 role=web join=10.132.0.2,10.132.0.3,10.132.0.4 version=1.4.2 gossip=" + testGossip + " " + testenv.ClientTLS},
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			files, err := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line)})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, dump(files))
		})
	}
}

// TestRenderGoldenEngine25: on Docker Engine 25 (API 1.44) the Compose
// file's healthcheck probes every second during its start period.
func TestRenderGoldenEngine25(t *testing.T) {
	tc := goldenCases[2]
	files, err := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line), EngineAPIVersion: "1.44"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, tc.name+"-engine25", dump(files))
}

func TestRenderInvariants(t *testing.T) {
	for _, tc := range goldenCases {
		files, err := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line)})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			s := string(f.Data)
			// The public and anchor addresses of the sample must never
			// appear: Consul binds to the VPC address only.
			if strings.Contains(s, "104.131.20.105") || strings.Contains(s, "10.17.0.5") {
				t.Errorf("%s/%s mentions a public or anchor address", tc.name, f.Path)
			}
			hasSecret := strings.Contains(s, testGossip) || strings.Contains(s, "dop_v1_golden")
			if hasSecret && f.Mode.Perm() != 0o600 {
				t.Errorf("%s/%s holds a secret with mode %04o", tc.name, f.Path, f.Mode.Perm())
			}
		}
	}
}

func TestRenderNeedsVPC(t *testing.T) {
	m := sampleMeta(t, "api-1", "")
	_, err := Render(Input{Meta: m, User: mustParse(t, goldenCases[2].line)})
	if !errors.Is(err, metadata.ErrNoPrivateInterface) {
		t.Fatalf("err = %v, want ErrNoPrivateInterface", err)
	}
}

// failing is a validator that rejects everything.
type failing struct{}

func (failing) Name() string { return string(ConsumerConsul) }
func (failing) Validate(context.Context, string, []File) error {
	return errors.New("bootstrap_expect is not allowed here")
}

// snapshot records every file under dir with its bytes and mode.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = fmt.Sprintf("%v %s", info.Mode(), b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplyRejectedLeavesPreviousFilesByteForByte(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	files, err := Render(Input{Meta: sampleMeta(t, "api-1", "10.132.0.5"), User: mustParse(t, goldenCases[2].line)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), root, files, TemplateValidator{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root.Dir)

	next, err := Render(Input{Meta: sampleMeta(t, "api-1", "10.132.0.9"), User: mustParse(t, goldenCases[3].line)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Apply(context.Background(), root, next, TemplateValidator{}, failing{})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	for _, want := range []string{"consul rejected", "/etc/consul.d/consul.hcl", "nothing was changed", "bootstrap_expect"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	after := snapshot(t, root.Dir)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatal("a rejected render changed files under the root")
	}
}

func TestApplyReportsOnlyRealChanges(t *testing.T) {
	root := fsutil.Root{Dir: t.TempDir()}
	in := Input{Meta: sampleMeta(t, "api-1", "10.132.0.5"), User: mustParse(t, goldenCases[2].line)}
	files, _ := Render(in)
	changed, err := Apply(context.Background(), root, files, TemplateValidator{})
	if err != nil || len(changed) != len(files) {
		t.Fatalf("first apply: changed %d of %d, err %v", len(changed), len(files), err)
	}
	changed, err = Apply(context.Background(), root, files, TemplateValidator{})
	if err != nil || len(changed) != 0 {
		t.Fatalf("second apply (a reboot): changed %v, err %v", changed, err)
	}
	in.User.Version = "1.4.3"
	files, _ = Render(in)
	changed, err = Apply(context.Background(), root, files, TemplateValidator{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/consul.d/service-api.hcl", "/root/docker/api/compose.yaml"}
	if fmt.Sprint(changed) != fmt.Sprint(want) {
		t.Fatalf("changed = %v, want %v", changed, want)
	}
}

func TestTemplateValidatorCatchesBadTemplates(t *testing.T) {
	files, _ := Render(Input{Meta: sampleMeta(t, "api-1", "10.132.0.5"), User: mustParse(t, goldenCases[2].line)})
	for _, tc := range []struct{ name, tmpl, want string }{
		{"syntax", "{{ range ls \"x\" }}", "api.env.ctmpl"},
		{"unknown function", "{{ nosuchfunc \"x\" }}", "nosuchfunc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := append([]File(nil), files...)
			for i := range bad {
				if strings.HasSuffix(bad[i].Path, ".ctmpl") {
					bad[i].Data = []byte(tc.tmpl)
				}
			}
			err := TemplateValidator{}.Validate(context.Background(), t.TempDir(), bad)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
	bad := append([]File(nil), files...)
	for i := range bad {
		if bad[i].Path == TemplateConfig {
			bad[i].Data = []byte("template { source = }")
		}
	}
	if err := (TemplateValidator{}).Validate(context.Background(), t.TempDir(), bad); err == nil || !strings.Contains(err.Error(), TemplateConfig) {
		t.Fatalf("bad config: err = %v", err)
	}
}

// A server's certificate and key are derived, not random: rendering again
// gives the same bytes, so a reboot restarts nothing. The key is 0600 and
// the certificate is the CA's, for server.<dc>.consul and the VPC address.
func TestServerTLSFilesAreStable(t *testing.T) {
	tc := goldenCases[0]
	in := Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line)}
	a, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Render(in)
	if !bytes.Equal(dump(a), dump(b)) {
		t.Fatal("two renders of the same input differ")
	}
	byPath := map[string]File{}
	for _, f := range a {
		byPath[f.Path] = f
	}
	if f := byPath[ConsulKeyFile]; f.Mode.Perm() != 0o600 || len(f.Data) == 0 {
		t.Fatalf("server key: mode %04o, %d bytes", f.Mode.Perm(), len(f.Data))
	}
	pair, err := tls.X509KeyPair(byPath[ConsulCertFile].Data, byPath[ConsulKeyFile].Data)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(byPath[ConsulCAFile].Data) {
		t.Fatal("no CA in ca.pem")
	}
	for _, name := range []string{"server." + in.User.Datacenter(in.Meta.Region) + ".consul", tc.ip} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A client gets the CA only.
	cl := goldenCases[2]
	files, _ := Render(Input{Meta: sampleMeta(t, cl.host, cl.ip), User: mustParse(t, cl.line)})
	for _, f := range files {
		if f.Path == ConsulKeyFile || f.Path == ConsulCertFile {
			t.Errorf("client has %s", f.Path)
		}
	}
}
