package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/internal/cli"
	"github.com/codelab-app/infra/imager/internal/images"
)

// Every kind of input changes the fingerprint of the images it goes into.
func TestFingerprintCoversEveryInput(t *testing.T) {
	arts := []artifacts.Artifact{{Name: "consul", Version: "1.17.1", SHA256: strings.Repeat("a", 64)}}
	fp := func(repo, family string, arts []artifacts.Artifact) string {
		t.Helper()
		agent := filepath.Join(repo, "agent.bin")
		if _, err := os.Stat(agent); err != nil {
			if err := os.WriteFile(agent, []byte("agent"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		in, err := cli.Inputs(repo, family, agent, arts)
		if err != nil {
			t.Fatal(err)
		}
		return images.Fingerprint(in)
	}
	base := fixtureRepo(t)
	baseApp, baseNeo := fp(base, "services-base", arts), fp(base, "neo4j-base", arts)
	if baseApp == baseNeo {
		t.Fatal("both images have the same fingerprint")
	}
	appendTo := func(rel string) func(repo string) {
		return func(repo string) {
			f, err := os.OpenFile(filepath.Join(repo, rel), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("\n# changed\n"); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name             string
		edit             func(repo string)
		changesApp, neo4 bool
	}{
		{"own template", appendTo("packer/services-base/services-base.pkr.hcl"), true, false},
		{"other image's template", appendTo("packer/neo4j-base/neo4j-base.pkr.hcl"), false, true},
		{"shared variables", appendTo("packer/common/variables.pkr.hcl"), true, true},
		{"script", appendTo("packer/scripts/install-base.sh"), true, true},
		{"versions", appendTo("packer/versions.pkrvars.hcl"), true, true},
		{"unit", appendTo("systemd/consul.service"), true, true},
		{"new timer", appendTo("systemd/new.timer"), true, true},
		{"role file", appendTo("roles/api/docker-compose.yml"), true, true},
		{"agent", func(repo string) {
			if err := os.WriteFile(filepath.Join(repo, "agent.bin"), []byte("agent2"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"unrelated file", appendTo("README.md"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := fixtureRepo(t)
			tc.edit(repo)
			if got := fp(repo, "services-base", arts) != baseApp; got != tc.changesApp {
				t.Errorf("services-base fingerprint changed = %v, want %v", got, tc.changesApp)
			}
			if got := fp(repo, "neo4j-base", arts) != baseNeo; got != tc.neo4 {
				t.Errorf("neo4j-base fingerprint changed = %v, want %v", got, tc.neo4)
			}
		})
	}
	other := []artifacts.Artifact{{Name: "consul", Version: "1.17.1", SHA256: strings.Repeat("b", 64)}}
	if fp(base, "services-base", other) == baseApp {
		t.Error("an artifact checksum change did not change the fingerprint")
	}
}

// With Packer 1.7+, validate stages the plugin declaration and runs packer init first.
func TestValidateWithModernPackerInitsPlugins(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "packer")
	script := `#!/bin/sh
case "$1" in
version) echo "Packer v1.9.4" ;;
init) echo "init $2" >> ` + dir + `/calls; ls "$2" >> ` + dir + `/calls ;;
validate) eval "last=\${$#}"; echo "validate $last" >> ` + dir + `/calls; echo "token=$DIGITALOCEAN_TOKEN" >> ` + dir + `/calls ;;
*) echo "unexpected $1" >&2; exit 99 ;;
esac
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	g, out, errb := globals(t, env{})
	g.Repo, g.Packer = fixtureRepo(t), bin
	if err := run(t, g, "validate", "app"); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errb)
	}
	calls := readFile(t, filepath.Join(dir, "calls"))
	for _, want := range []string{"init ", "plugins.pkr.hcl\n", "services-base.pkr.hcl\n", "variables.pkr.hcl\n", "validate ", "token=imager-validate-placeholder\n"} {
		if !strings.Contains(calls, want) {
			t.Errorf("calls lack %q:\n%s", want, calls)
		}
	}
	if strings.Index(calls, "init ") > strings.Index(calls, "validate ") {
		t.Errorf("init must run before validate:\n%s", calls)
	}
}

// validate checks the versions file before Packer: a bad pin fails it, naming the line.
func TestValidateRejectsABadPin(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"short checksum", `consul_sha256  = "388889321d6aaf389ee87acc247ea9885e684a1581c8ebfbeab7348abd7c0214"`, `consul_sha256 = "38888932"`, `versions.pkrvars.hcl:14: consul_sha256: "38888932" has 8 hex digits; a SHA-256 has 64`},
		{"unknown variable", `doctl_version = "1.104.0"`, "doctl_version = \"1.104.0\"\ndoctl_sha256 = \"\"", `versions.pkrvars.hcl:25: doctl_sha256: unknown variable`},
		{"doctl pin drifts from tools/doctl", `doctl_version = "1.104.0"`, `doctl_version = "1.105.0"`, `requires github.com/digitalocean/doctl v1.104.0 but the versions file says 1.105.0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "packer")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+dir+"/RAN\necho Packer v1.9.4\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			repo := fixtureRepo(t)
			vf := filepath.Join(repo, "packer", "versions.pkrvars.hcl")
			b := readFile(t, vf)
			if !strings.Contains(b, tc.old) {
				t.Fatalf("versions file lacks %q", tc.old)
			}
			if err := os.WriteFile(vf, []byte(strings.Replace(b, tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			g, _, _ := globals(t, env{})
			g.Repo, g.Packer = repo, bin
			err := run(t, g, "validate", "all")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "RAN")); err == nil {
				t.Error("packer ran although the versions file is bad")
			}
		})
	}
}
