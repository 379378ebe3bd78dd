package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/internal/exitcode"
	"github.com/codelab-app/infra/tools/testenv"
)

const (
	gossip   = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
	metaFile = "../metadata/testdata/droplet.json"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Execute(context.Background(), args, IO{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %v %x\n", p, info.Mode(), data)
		}
		return nil
	})
	return b.String()
}

func TestRenderWritesFiles(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	ud := writeFile(t, dir, "ud", "#codelab v1 role=api join=10.132.0.2 gossip="+gossip+" "+testenv.ClientTLS+"\n")
	// Validation with consul is the integration tier's; here PATH has none.
	t.Setenv("PATH", "")
	code, out, errOut := run(t, "", "render", "--root", root, "--metadata-file", metaFile, "--user-data-file", ud)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"changed   0600 /etc/consul.d/encrypt.hcl", "/root/docker/api/compose.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "consul validate skipped") {
		t.Errorf("missing consul binary must be said: %s", errOut)
	}
	if strings.Contains(out+errOut, gossip) {
		t.Error("output leaks the gossip key")
	}
	st, err := os.Stat(filepath.Join(root, "etc/consul.d/encrypt.hcl"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("encrypt.hcl: %v %v", st, err)
	}
	code, out, _ = run(t, "", "render", "--root", root, "--metadata-file", metaFile, "--user-data-file", ud)
	if code != 0 || strings.Contains("\n"+out, "\nchanged ") {
		t.Fatalf("second render changed files (exit %d):\n%s", code, out)
	}
}

func TestRenderBadUserdataLeavesRootUntouched(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	t.Setenv("PATH", "")
	good := writeFile(t, dir, "good", "#codelab v1 role=api join=10.132.0.2 gossip="+gossip+" "+testenv.ClientTLS)
	if code, _, errOut := run(t, "", "render", "--root", root, "--metadata-file", metaFile, "--user-data-file", good); code != 0 {
		t.Fatalf("good render: %s", errOut)
	}
	before := tree(t, root)
	bad := writeFile(t, dir, "bad", "#codelab v1 role=api consul=cleint join=10.132.0.2 gossip="+gossip)
	code, _, errOut := run(t, "", "render", "--root", root, "--metadata-file", metaFile, "--user-data-file", bad)
	if code != exitcode.Failed {
		t.Fatalf("exit %d, want %d", code, exitcode.Failed)
	}
	if !strings.Contains(errOut, `token 4 "consul=cleint"`) || !strings.Contains(errOut, "server or client") {
		t.Fatalf("error does not name the token and what was expected: %s", errOut)
	}
	if tree(t, root) != before {
		t.Fatal("a bad user_data line changed the root")
	}
}

func TestRenderWithoutVPCSaysSo(t *testing.T) {
	dir := t.TempDir()
	meta := writeFile(t, dir, "m.json", `{"droplet_id":1,"hostname":"h","region":"nyc3","interfaces":{"public":[{"ipv4":{"ip_address":"1.2.3.4"}}]}}`)
	ud := writeFile(t, dir, "ud", "#codelab v1 role=api join=10.132.0.2 gossip="+gossip+" "+testenv.ClientTLS)
	code, _, errOut := run(t, "", "render", "--root", t.TempDir(), "--metadata-file", meta, "--user-data-file", ud)
	if code != exitcode.Failed || !strings.Contains(errOut, "no private (VPC) interface") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestUsageErrorsExit64(t *testing.T) {
	for _, args := range [][]string{
		{"render", "--no-such-flag"}, {"no-such-command"}, {"render", "extra-arg"}, {"userdata"},
		{"backup", "no-such-command"}, {"--log-level=verbose", "render"}, {"status", "--log-level", "trace"}, {"backup", "restore"}, {"--root=/x", "no-such-command"},
	} {
		code, _, errOut := run(t, "", args...)
		if code != exitcode.Usage {
			t.Errorf("%v: exit %d, want 64 (%s)", args, code, errOut)
		}
	}
}

// A failure whose text happens to be EINVAL's ("invalid argument") is a
// failure, not a usage error: the code comes from the error's type.
func TestInvalidArgumentErrnoIsAFailure(t *testing.T) {
	ud := writeFile(t, t.TempDir(), "ud", "#codelab v1 role=api join=10.132.0.2 gossip="+gossip+" "+testenv.ClientTLS)
	// A NUL byte in the path makes open(2) fail with EINVAL.
	code, _, errOut := run(t, "", "render", "--root", t.TempDir(), "--metadata-file", "bad\x00path", "--user-data-file", ud)
	if code != exitcode.Failed || !strings.Contains(errOut, "invalid argument") || strings.Contains(errOut, "--help") {
		t.Fatalf("exit %d, want %d: %s", code, exitcode.Failed, errOut)
	}
}

func TestUserdataGenerateAndCheck(t *testing.T) {
	t.Setenv(EnvGossip, gossip)
	t.Setenv(EnvDOToken, "dop_v1_abcdef0123456789")
	dir := filepath.Join(t.TempDir(), "ca")
	code, out, errOut := run(t, "", "userdata", "--new-ca", dir)
	if code != 0 {
		t.Fatalf("new CA: exit %d: %s", code, errOut)
	}
	caFile, keyFile := filepath.Join(dir, CACertName), filepath.Join(dir, CAKeyName)
	for p, mode := range map[string]os.FileMode{caFile: 0o644, keyFile: 0o600} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", p, err, st, mode)
		}
	}
	keyPEM, _ := os.ReadFile(keyFile)
	if strings.Contains(out+errOut, strings.TrimSpace(string(keyPEM))) {
		t.Fatal("--new-ca printed the key")
	}
	if code, _, errOut := run(t, "", "userdata", "--new-ca", dir); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("a second --new-ca into the same folder: exit %d: %s", code, errOut)
	}
	code, out, errOut = run(t, "", "userdata", "--role", "neo4j", "--consul", "server", "--bootstrap", "3", "--ca", caFile, "--ca-key-file", keyFile)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	line := strings.TrimSpace(out)
	c, err := userdata.Parse(line)
	if err != nil || c.Role != "neo4j" || c.Bootstrap != 3 || c.GossipKey.Reveal() != gossip || c.CAKey == "" {
		t.Fatalf("generated line %q: %+v %v", line, c, err)
	}
	// A client gets the certificate only, even when the key is at hand.
	t.Setenv(EnvCAKey, string(keyPEM))
	code, out, errOut = run(t, "", "userdata", "--role", "api", "--join", "10.0.0.1", "--ca", caFile)
	if code != 0 || strings.Contains(out, "ca_key=") || !strings.Contains(out, " ca=") {
		t.Fatalf("client line: exit %d: %q %s", code, out, errOut)
	}
	// ... and its role's Consul token, the one the servers derive.
	cl, err := userdata.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	srvTok, _ := userdata.Config{Role: "api", Env: "prod", CA: c.CA, CAKey: c.CAKey}.RoleToken()
	if cl.ConsulToken == "" || cl.ConsulToken != srvTok {
		t.Fatal("the client's consul_token is not the api role's derived token")
	}
	// The management token goes to a 0600 file, never to the output.
	tokFile := filepath.Join(t.TempDir(), "mgmt")
	code, out, errOut = run(t, "", "userdata", "--management-token-file", tokFile, "--ca", caFile)
	tokBytes, rerr := os.ReadFile(tokFile)
	st, serr := os.Stat(tokFile)
	want, _ := userdata.Config{Role: "neo4j", Env: "prod", Consul: "server", CA: c.CA, CAKey: c.CAKey}.ManagementToken()
	if code != 0 || rerr != nil || serr != nil || st.Mode().Perm() != 0o600 || strings.TrimSpace(string(tokBytes)) != want.Reveal() || strings.Contains(out+errOut, want.Reveal()) {
		t.Fatalf("management token: exit %d %q %s %v %v", code, out, errOut, rerr, serr)
	}
	// Another cluster's key is refused, and not shown.
	t.Setenv(EnvCAKey, testenv.OtherCAKey)
	code, _, errOut = run(t, "", "userdata", "--role", "neo4j", "--consul", "server", "--ca", caFile)
	if code != exitcode.Failed || !strings.Contains(errOut, "does not belong") || strings.Contains(errOut, testenv.OtherCAKey) {
		t.Fatalf("mismatched key: exit %d: %s", code, errOut)
	}
	t.Setenv(EnvCAKey, "")
	code, out, errOut = run(t, line, "userdata", "--check")
	if code != 0 || !strings.HasPrefix(out, "ok: #codelab v1 role=neo4j") || strings.Contains(out, gossip) {
		t.Fatalf("check: exit %d out %q err %q", code, out, errOut)
	}
	code, _, errOut = run(t, "#codelab v1 role=api role=web", "userdata", "--check")
	if code != exitcode.Failed || !strings.Contains(errOut, `duplicate key "role"`) {
		t.Fatalf("check of a bad line: exit %d: %s", code, errOut)
	}
	t.Setenv(EnvGossip, "")
	code, _, errOut = run(t, "", "userdata", "--role", "api", "--join", "10.0.0.1")
	if code != exitcode.Failed || !strings.Contains(errOut, "missing required key gossip") {
		t.Fatalf("missing gossip: exit %d: %s", code, errOut)
	}
}

func TestHelpDocumentsExitCodesAndKeys(t *testing.T) {
	_, out, _ := run(t, "", "--help")
	if !strings.Contains(out, exitcode.Doc) {
		t.Errorf("root help lacks the exit codes:\n%s", out)
	}
	_, out, _ = run(t, "", "userdata", "--help")
	for _, k := range userdata.KeyNames() {
		if !strings.Contains(out, "  "+k+" ") {
			t.Errorf("userdata help does not document %s", k)
		}
	}
}
