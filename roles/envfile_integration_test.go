package roles

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/tools/testenv"
)

// awkward are KV values that Compose's env_file parser would reinterpret if
// they were written bare: comments, interpolation, quotes, escapes.
var awkward = map[string]string{
	"HASH":      "a #b#c # d",
	"DOLLAR":    "$HOME $1 $$ ${X} ${X:-def} $X trailing$",
	"SQUOTE":    "it's 'quoted'",
	"DQUOTE":    `say "hi" \"x\" "`,
	"EQUALS":    "a=b==c=",
	"SPACES":    "  lead, inner  and trail  ",
	"BACKSLASH": `C:\new\table\\ \$X \n \' \`,
	"MIXED":     `'"$X"' # "'${X}'"`,
	"EMPTY":     "",
	"UNICODE":   "pässwörd ✓ ünïcode",
}

// pem is a multi-line value: refused, since a newline is a control
// character.
const pem = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n"

// renderEnv runs consul-template -once on src to dst and returns its
// combined output and error; it fails t when the render is still waiting
// after wait.
func renderEnv(t *testing.T, consul string, src []byte, dst string, wait time.Duration) (string, error) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in.ctmpl")
	if err := os.WriteFile(in, src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b, err := exec.CommandContext(ctx, "consul-template", "-once", "-consul-addr", consul, "-template", in+":"+dst, "-log-level", "err").CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("consul-template still waiting after %s: %s", wait, b)
	}
	return string(b), err
}

// composeEnv returns the environment Compose gives a service whose env_file
// is envFile: from `docker compose config` (the parsed model) and from the
// started container itself (`env -0` in the Debian base image). X is set in
// Compose's own environment so an interpolation would show.
func composeEnv(t *testing.T, envFile string) (config, container map[string]string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	y := fmt.Sprintf("services:\n  s:\n    image: %s\n    env_file:\n      - %s\n    command: [\"env\", \"-0\"]\n", testenv.BaseImage, envFile)
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	project := "envfile" + strings.ToLower(strings.ReplaceAll(filepath.Base(dir), "_", ""))
	run := func(args ...string) []byte {
		cmd := exec.Command("docker", append([]string{"compose", "-p", project, "-f", file}, args...)...)
		cmd.Env = append(os.Environ(), "X=INTERPOLATED", "HOME=/interpolated")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	t.Cleanup(func() {
		_ = exec.Command("docker", "compose", "-p", project, "-f", file, "down", "--remove-orphans").Run()
	})

	var model struct {
		Services map[string]struct {
			Environment map[string]*string `json:"environment"`
		} `json:"services"`
	}
	if err := json.Unmarshal(run("config", "--format", "json"), &model); err != nil {
		t.Fatalf("compose config: %v", err)
	}
	config = map[string]string{}
	for k, v := range model.Services["s"].Environment {
		if v != nil {
			// config prints the model back as Compose YAML, where a
			// literal $ is written $$.
			config[k] = strings.ReplaceAll(*v, "$$", "$")
		}
	}
	container = map[string]string{}
	for _, kv := range strings.Split(string(run("run", "--rm", "--no-deps", "-T", "s")), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			container[k] = v
		}
	}
	return config, container
}

// TestEnvFilesKeepValuesWithComposeIntegration renders every role's env
// template with the real consul-template from real Consul KV and reads the
// result with the real `docker compose`: every awkward value reaches the
// container byte for byte, and a multi-line value (a PEM) or a bad key name
// is refused with an error naming the key while the old file stays.
func TestEnvFilesKeepValuesWithComposeIntegration(t *testing.T) {
	testenv.Integration(t, "consul", "consul-template", "docker")
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Fatalf("integration prerequisite missing: docker compose: %v: %s", err, out)
	}
	if _, err := testenv.Output(context.Background(), "docker", "image", "inspect", testenv.BaseImage); err != nil {
		t.Fatalf("integration prerequisite missing: image %s (make deps imports it): %v", testenv.BaseImage, err)
	}
	consul := devConsul(t)

	for _, role := range Names {
		t.Run(role, func(t *testing.T) {
			d := Data{Role: role, Env: "prod", Registry: "registry.test/codelab", Version: "1.2.3", Datacenter: "dc1", Hostname: "h", PrivateIP: "10.0.0.5"}
			src := execute(t, role, "templates/"+role+".env.ctmpl", d)
			prefix := RequiredKVPath("prod", role, "")
			req, err := Required(role)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for _, k := range req {
				want[k] = "required-" + k
			}
			for k, v := range awkward {
				want[k] = v
			}
			for k, v := range want {
				if err := kvPut(consul, prefix+k, v); err != nil {
					t.Fatal(err)
				}
			}

			envFile := filepath.Join(t.TempDir(), role+".env")
			if out, err := renderEnv(t, consul, src, envFile, 30*time.Second); err != nil {
				t.Fatalf("render: %v\n%s", err, out)
			}
			good, err := os.ReadFile(envFile)
			if err != nil {
				t.Fatal(err)
			}
			config, container := composeEnv(t, envFile)
			for k, v := range want {
				if config[k] != v {
					t.Errorf("compose config: %s = %q, KV has %q\nenv file:\n%s", k, config[k], v, good)
				}
				if container[k] != v {
					t.Errorf("container: %s = %q, KV has %q", k, container[k], v)
				}
			}

			// Refusals: the error names the key (never the value), and the
			// destination keeps the last good render.
			for _, bad := range []struct{ key, value, says string }{
				{"TLS_KEY", pem, "codelab/prod/" + role + "/TLS_KEY holds a newline or another control character"},
				{"TAB", "a\tb", "codelab/prod/" + role + "/TAB holds a newline or another control character"},
				{"BAD-NAME", "x", `key \"BAD-NAME\" below codelab/prod/` + role + `/ is not an environment variable name`},
			} {
				if err := kvPut(consul, prefix+bad.key, bad.value); err != nil {
					t.Fatal(err)
				}
				out, err := renderEnv(t, consul, src, envFile, 30*time.Second)
				if err == nil {
					t.Errorf("%s: rendered a refused value", bad.key)
				}
				if !strings.Contains(out, bad.says) {
					t.Errorf("%s: consul-template's error does not say %q:\n%s", bad.key, bad.says, out)
				}
				if strings.Contains(out, "MIIBVQ") {
					t.Errorf("%s: the error shows the value:\n%s", bad.key, out)
				}
				now, err := os.ReadFile(envFile)
				if err != nil || !bytes.Equal(now, good) {
					t.Errorf("%s: the env file changed after a refused render (%v):\n%s", bad.key, err, now)
				}
				if err := kvDelete(consul, prefix+bad.key); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func kvDelete(addr, key string) error {
	req, err := http.NewRequest(http.MethodDelete, "http://"+addr+"/v1/kv/"+key, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("DELETE %s: %s", key, resp.Status)
	}
	return nil
}
