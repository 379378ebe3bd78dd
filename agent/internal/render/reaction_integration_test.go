package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/roles"
	"github.com/codelab-app/infra/tools/testenv"
)

// waitUntil retries fn every few hundred milliseconds until it succeeds or
// d passes, then fails t with fn's last error.
func waitUntil(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second}, func(context.Context) error { return fn() }); err != nil {
		t.Fatalf("gave up after %s: %v", d, err)
	}
}

// devConsul starts `consul agent -dev` on free loopback ports and returns
// its HTTP port.
func devConsul(t *testing.T) int {
	t.Helper()
	p := freePorts(t, 4)
	hcl := fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, serf_lan = %d, serf_wan = %d, server = %d }`, p[0], p[1], p[2], p[3])
	cmd := exec.Command("consul", "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-hcl", hcl)
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start consul: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("consul:\n%s", logs.String())
		}
	})
	waitUntil(t, 30*time.Second, func() error { return kvPut(p[0], "codelab/ping", "1") })
	return p[0]
}

// kvPut writes a key with the consul CLI (key may carry ?flags=N).
func kvPut(httpPort int, key, value string) error {
	args := []string{"kv", "put", fmt.Sprintf("-http-addr=127.0.0.1:%d", httpPort)}
	if k, flags, ok := strings.Cut(key, "?flags="); ok {
		key = k
		args = append(args, "-flags="+flags)
	}
	out, err := exec.Command("consul", append(args, key, value)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("consul kv put %s: %w: %s", key, err, out)
	}
	return nil
}

func dockerOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// A KV change reaches the container's environment through exactly what
// Render writes for a role (the consul-template config with its template
// stanza and exec, and the role's template), consul-template and docker
// compose; a render that changes nothing restarts nothing. Real Consul,
// consul-template and dockerd.
//
// Two things differ from a droplet, because this runs on a shared test
// host: the Compose project name (the stanza's "-p api" becomes a unique
// name, so parallel runs and anything else on the host's dockerd never
// collide) and the Compose file (the role's own publishes port 3000 and
// reads its env file from the droplet's /root/docker; the test's reads the
// rendered destination under the test root). Everything else is used as
// rendered.
func TestKVChangeReachesContainerIntegration(t *testing.T) {
	testenv.Integration(t, "consul", "consul-template", "docker", "flock")
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Fatalf("integration prerequisite missing: docker compose: %v: %s", err, out)
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	registry, version := "codelab-reaction.test/r"+suffix, "v"+suffix
	image := registry + "/api:" + version
	testenv.BuildImage(t, testenv.Image{Ref: image})
	t.Cleanup(func() { testenv.RemoveImage(t, image) })

	consul := devConsul(t)
	required, err := roles.Required("api")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range required {
		if err := kvPut(consul, roles.RequiredKVPath("prod", "api", k), "set"); err != nil {
			t.Fatal(err)
		}
	}
	if err := kvPut(consul, "codelab/prod/api/GREETING", "one"); err != nil {
		t.Fatal(err)
	}

	// Render and apply the api role's files under a test root.
	root := fsutil.Root{Dir: t.TempDir()}
	line := fmt.Sprintf("#codelab v1 role=api env=prod join=127.0.0.1 registry=%s version=%s gossip=%s %s", registry, version, testGossip, testenv.ClientTLS)
	meta := metadata.Metadata{DropletID: "1", Hostname: "api-1", Region: "nyc3", PrivateIPv4: "127.0.0.1"}
	files, err := Render(Input{Meta: meta, User: mustParse(t, line), Ports: &Ports{HTTP: consul}, ContentRoot: root.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), root, files, TemplateValidator{}); err != nil {
		t.Fatalf("apply: %v", err)
	}

	project := "codelabreaction" + suffix
	cfgFile := root.Path(TemplateConfig)
	cfg, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(cfg), `"-p", "api"`); n != 1 {
		t.Fatalf("the rendered config has %d Compose project arguments, want 1:\n%s", n, cfg)
	}
	cfg = bytes.Replace(cfg, []byte(`"-p", "api"`), []byte(`"-p", "`+project+`"`), 1)
	if err := os.WriteFile(cfgFile, cfg, 0o640); err != nil {
		t.Fatal(err)
	}
	compose := root.Path(ComposeFile("api"))
	envFile := root.Path(ComposeRoot + "/api/api.env")
	composeYAML := fmt.Sprintf("services:\n  api:\n    image: %s\n    env_file:\n      - %s\n", image, envFile)
	if err := os.WriteFile(compose, []byte(composeYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	// The droplet has /run/lock; the lock file itself flock(1) creates.
	if err := os.MkdirAll(filepath.Dir(root.Path(ComposeLock("api"))), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "compose", "-p", project, "-f", compose, "down", "-t", "1").CombinedOutput(); err != nil {
			t.Errorf("docker compose down %s: %v: %s", project, err, out)
		}
	})

	logs := &testenv.SyncBuffer{}
	ct := exec.Command("consul-template", "-config", cfgFile, "-log-level", "debug")
	ct.Stdout, ct.Stderr = logs, logs
	if err := ct.Start(); err != nil {
		t.Fatalf("start consul-template: %v", err)
	}
	t.Cleanup(func() {
		_ = ct.Process.Kill()
		_ = ct.Wait()
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
		waitUntil(t, 2*time.Minute, func() error {
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
	// The rendered exec runs `docker compose up --wait`: compose waits for
	// the healthcheck and says so.
	waitUntil(t, time.Minute, func() error {
		if !strings.Contains(logs.String(), "api-1  Healthy") {
			return fmt.Errorf("docker compose up --wait has not reported the container healthy")
		}
		return nil
	})
	if err := kvPut(consul, "codelab/prod/api/GREETING", "two"); err != nil {
		t.Fatal(err)
	}
	second := waitGreeting("two")
	if second == first {
		t.Fatal("the container was not recreated with the new environment")
	}

	// The same value with new flags: Consul bumps the entry's index,
	// consul-template receives it and renders the same bytes, and runs
	// nothing. (Consul ignores a write of the very same value and flags.)
	execs := strings.Count(logs.String(), "executing command")
	started := dockerOut(t, "inspect", "-f", "{{.State.StartedAt}}", second)
	marker := strings.Count(logs.String(), "kv.list(codelab/prod/api)")
	settled := strings.Count(logs.String(), "all templates rendered")
	if err := kvPut(consul, "codelab/prod/api/GREETING?flags=7", "two"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, func() error {
		if strings.Count(logs.String(), "kv.list(codelab/prod/api)") <= marker {
			return fmt.Errorf("consul-template has not seen the write yet")
		}
		return nil
	})
	// The run that follows the receipt decides: it ends with "all
	// templates rendered" after the render and any exec were started.
	waitUntil(t, 30*time.Second, func() error {
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
	if id, _, _ := container(); id != second || dockerOut(t, "inspect", "-f", "{{.State.StartedAt}}", second) != started {
		t.Error("an unchanged render restarted the container")
	}

	// A value with a newline would add a variable: the template refuses
	// it with an error naming the key, writes nothing and runs nothing,
	// so the old env file and container stay.
	oldEnv, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := kvPut(consul, "codelab/prod/api/GREETING", "three\nINJECTED=1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, func() error {
		if !strings.Contains(logs.String(), "codelab/prod/api/GREETING holds a newline or another control character") {
			return fmt.Errorf("consul-template has not refused the value")
		}
		return nil
	})
	if strings.Contains(logs.String(), "INJECTED") {
		t.Error("consul-template's error shows the value")
	}
	if now, err := os.ReadFile(envFile); err != nil || !bytes.Equal(now, oldEnv) {
		t.Errorf("a refused render changed the env file (%v):\n%s", err, now)
	}
	if id, greeting, err := container(); err != nil || id != second || greeting != "two" {
		t.Errorf("after a refused render the container is %s with GREETING=%q (%v), want %s with two", id, greeting, err, second)
	}
}
