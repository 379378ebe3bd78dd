package roles

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codelab-app/infra/tools/testenv"
)

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// A KV change reaches the container's environment through the role's
// real template, consul-template's exec and docker compose; a render that
// changes nothing restarts nothing. Real Consul, consul-template, dockerd.
func TestKVChangeReachesContainerIntegration(t *testing.T) {
	testenv.Integration(t, "consul", "consul-template", "docker")
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Fatalf("integration prerequisite missing: docker compose: %v: %s", err, out)
	}
	// Any small local image serves as the app; the neo4j stand-in is one.
	image := "codelab-local/neo4j-standin:roles-test"
	if out, err := exec.Command("../e2e/images/neo4j-standin/build.sh", image).CombinedOutput(); err != nil {
		t.Fatalf("build the stand-in image: %v: %s", err, out)
	}

	consul := devConsul(t)
	keys, _ := Required("api")
	for _, k := range keys {
		kvPut(consul, RequiredKVPath("prod", "api", k), "set")
	}
	kvPut(consul, "codelab/prod/api/GREETING", "one")

	dir := t.TempDir()
	project := fmt.Sprintf("codelabroles%d", time.Now().UnixNano()%1e9)
	env := filepath.Join(dir, "api.env")
	compose := filepath.Join(dir, "compose.yaml")
	os.WriteFile(compose, []byte(fmt.Sprintf("name: %s\nservices:\n  api:\n    image: %s\n    env_file:\n      - %s\n", project, image, env)), 0o644)
	t.Cleanup(func() { exec.Command("docker", "compose", "-p", project, "-f", compose, "down", "-t", "1").Run() })
	src := filepath.Join(dir, "api.env.ctmpl")
	os.WriteFile(src, execute(t, "api", "templates/api.env.ctmpl", Data{Role: "api", Env: "prod", PrivateIP: "127.0.0.1"}), 0o644)
	// The stanza agent/internal/render writes for every role: exec applies
	// the project under the role's compose lock (render.ComposeLock).
	lock := filepath.Join(dir, "codelab-compose-api.lock")
	cfg := fmt.Sprintf(`consul { address = %q }
log_level = "debug"
template {
  source      = %q
  destination = %q
  perms       = 0600
  exec {
    command = ["flock", "--wait", "240", %q, "docker", "compose", "-p", %q, "-f", %q, "up", "-d", "--pull", "never"]
    timeout = "120s"
  }
}
`, consul, src, env, lock, project, compose)
	cfgFile := filepath.Join(dir, "config.hcl")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	logs := &syncBuffer{}
	ct := exec.Command("consul-template", "-config", cfgFile, "-log-level", "debug")
	ct.Stdout, ct.Stderr = logs, logs
	if err := ct.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ct.Process.Kill()
		ct.Wait()
		if t.Failed() {
			t.Logf("consul-template:\n%s", logs.String())
		}
	})

	container := func() (id, greeting string, err error) {
		out, err := exec.Command("docker", "ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project="+project).Output()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			return "", "", fmt.Errorf("no container yet")
		}
		id = strings.TrimSpace(string(out))
		envs, err := exec.Command("docker", "inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", id).Output()
		if err != nil {
			return "", "", fmt.Errorf("container %s went away (recreated?): %w", id, err)
		}
		for _, line := range strings.Split(string(envs), "\n") {
			if v, ok := strings.CutPrefix(line, "GREETING="); ok {
				return id, v, nil
			}
		}
		return id, "", nil
	}
	waitGreeting := func(want string) string {
		var id string
		waitFor(t, 90*time.Second, func() error {
			var got string
			var err error
			id, got, err = container()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("GREETING=%q, want %q", got, want)
			}
			return nil
		})
		return id
	}

	first := waitGreeting("one")
	kvPut(consul, "codelab/prod/api/GREETING", "two")
	second := waitGreeting("two")
	if second == first {
		t.Fatal("the container was not recreated with the new environment")
	}

	// The same value with new flags: Consul bumps the entry's index,
	// consul-template receives it and renders the same bytes, and runs
	// nothing. (Consul ignores a write of the very same value and flags.)
	execs := strings.Count(logs.String(), "executing command")
	started := docker(t, "inspect", "-f", "{{.State.StartedAt}}", second)
	marker := strings.Count(logs.String(), "kv.list(codelab/prod/api)")
	settled := strings.Count(logs.String(), "all templates rendered")
	kvPut(consul, "codelab/prod/api/GREETING?flags=7", "two")
	waitFor(t, 30*time.Second, func() error {
		if strings.Count(logs.String(), "kv.list(codelab/prod/api)") <= marker {
			return fmt.Errorf("consul-template has not seen the write yet")
		}
		return nil
	})
	// The run that follows the receipt decides: it ends with "all
	// templates rendered" after the render and any exec were started.
	waitFor(t, 30*time.Second, func() error {
		l := logs.String()
		if strings.Count(l, "all templates rendered") <= settled ||
			strings.LastIndex(l, "all templates rendered") < strings.LastIndex(l, "receiving dependency kv.list(codelab/prod/api)") {
			return fmt.Errorf("consul-template has not finished the run")
		}
		return nil
	})
	if n := strings.Count(logs.String(), "executing command"); n != execs {
		t.Errorf("an unchanged render ran the command (%d -> %d)", execs, n)
	}
	if id, _, _ := container(); id != second || docker(t, "inspect", "-f", "{{.State.StartedAt}}", second) != started {
		t.Error("an unchanged render restarted the container")
	}
}
