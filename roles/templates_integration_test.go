package roles

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/tools/testenv"
)

// execute renders a role file with Data, as the agent does.
func execute(t *testing.T, role, name string, d Data) []byte {
	t.Helper()
	fsys, err := FS(role)
	if err != nil {
		t.Fatal(err)
	}
	src, err := fs.ReadFile(fsys, name)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := Parse(name, src)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tm.Execute(&out, d); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// devConsul starts `consul agent -dev` on free loopback ports and returns
// its HTTP address.
func devConsul(t *testing.T) string {
	t.Helper()
	http := freePort(t)
	ports := fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, serf_lan = %d, serf_wan = %d, server = %d }`, http, freePort(t), freePort(t), freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "consul", "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-hcl", ports)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait() // "signal: killed": the cancel above stopped it
		if t.Failed() {
			t.Logf("consul:\n%s", logs.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", http)
	waitFor(t, 30*time.Second, func() error { return kvPut(addr, "codelab/ping", "1") })
	return addr
}

func kvPut(addr, key, value string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("PUT %s: %s", key, resp.Status)
	}
	return nil
}

// waitFor calls fn until it succeeds or d passes (doubling waits).
func waitFor(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	wait := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %v", d, err)
		}
		timer := time.NewTimer(wait)
		<-timer.C
		wait = min(wait*2, time.Second)
	}
}

// renderOnce runs consul-template -once on one template; it returns false
// when the template is still waiting for a key after wait.
func renderOnce(t *testing.T, consul string, src []byte, wait time.Duration) ([]byte, bool) {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.ctmpl"), filepath.Join(dir, "out")
	if err := os.WriteFile(in, src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b, err := exec.CommandContext(ctx, "consul-template", "-once", "-consul-addr", consul, "-template", in+":"+out, "-log-level", "err").CombinedOutput()
	if ctx.Err() != nil {
		return nil, false
	}
	if err != nil {
		t.Fatalf("consul-template: %v: %s", err, b)
	}
	r, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return r, true
}

func TestRoleTemplatesWithConsulIntegration(t *testing.T) {
	testenv.Integration(t, "consul", "consul-template")
	consul := devConsul(t)
	d := Data{Role: "api", Env: "prod", Registry: "registry.test/codelab", Version: "1.2.3", Datacenter: "dc1", Hostname: "h", PrivateIP: "10.0.0.5"}

	// api waits for its required keys: nothing is rendered without them.
	api := execute(t, "api", "templates/api.env.ctmpl", d)
	if _, done := renderOnce(t, consul, api, 3*time.Second); done {
		t.Fatal("api.env rendered without its required keys")
	}
	keys, err := Required("api")
	if err != nil || len(keys) == 0 {
		t.Fatalf("Required(api) = %v, %v", keys, err)
	}
	for _, k := range keys {
		if err := kvPut(consul, RequiredKVPath("prod", "api", k), "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	kvPut(consul, "codelab/prod/api/LOG_LEVEL", "debug")
	kvPut(consul, "codelab/staging/api/LOG_LEVEL", "never-in-prod")
	out, done := renderOnce(t, consul, api, 20*time.Second)
	if !done {
		t.Fatal("api.env still waiting with every required key present")
	}
	for _, want := range []string{`NEO4J_USER="v-NEO4J_USER"`, `LOG_LEVEL="debug"`, "CODELAB_ROLE=api"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("api.env lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "never-in-prod") {
		t.Error("api.env took a staging key")
	}

	// neo4j's backup settings and secret file render as valid JSON with
	// defaults, and take overrides from KV.
	d.Role = "neo4j"
	kvPut(consul, "codelab/prod/backup/keep_daily", "3")
	kvPut(consul, "codelab/prod/backup/spaces_secret_key", `s3cr"et`)
	kvPut(consul, "codelab/prod/backup/manifest_key", "manifest-key-0123456789abcdef0123456789")
	for name, check := range map[string]func(map[string]any) error{
		"templates/backup.json.ctmpl": func(m map[string]any) error {
			if m["keepDaily"] != 3.0 || m["keepWeekly"] != 4.0 || m["edition"] != "community" || m["image"] != "registry.test/codelab/neo4j:1.2.3" {
				return fmt.Errorf("backup.json = %v", m)
			}
			return nil
		},
		"templates/spaces.json.ctmpl": func(m map[string]any) error {
			if m["secretKey"] != `s3cr"et` || m["bucket"] != "" || m["manifestKey"] != "manifest-key-0123456789abcdef0123456789" {
				return fmt.Errorf("spaces.json = %v", m)
			}
			return nil
		},
	} {
		out, done := renderOnce(t, consul, execute(t, "neo4j", name, d), 20*time.Second)
		if !done {
			t.Fatalf("%s did not render", name)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s is not JSON: %v\n%s", name, err, out)
		}
		if err := check(m); err != nil {
			t.Error(err)
		}
	}
}
