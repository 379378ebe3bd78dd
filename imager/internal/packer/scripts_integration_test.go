package packer_test

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

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/tools/testenv"
)

// DebianImage is the Debian 12 base made by `make deps` (debootstrap minbase + systemd,
// openssh-server, ...), standing in for DigitalOcean's debian-12-x64.
const DebianImage = "codelab-local/debian-12-x64:latest"

// requireDocker switches the test on (testenv.Integration) and requires
// dockerd and the Debian image.
func requireDocker(t *testing.T) {
	t.Helper()
	testenv.Integration(t, "docker")
	if out, err := exec.Command("docker", "image", "inspect", DebianImage).CombinedOutput(); err != nil {
		t.Fatalf("integration prerequisite: docker image %s is missing (make deps builds it): %v: %s", DebianImage, err, out)
	}
}

func scriptsDir(t *testing.T) string {
	d, err := filepath.Abs(filepath.Join("..", "..", "..", "packer", "scripts"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// testPayload is what the imager uploads, with stub binaries: the scripts are under
// test here, not Consul.
func testPayload(t *testing.T, units ...string) string {
	dir := t.TempDir()
	for _, d := range []string{"bin", "systemd", "roles/api"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"consul", "consul-template", "doctl", "codelab-agent"} {
		if err := os.WriteFile(filepath.Join(dir, "bin", b), []byte("#!/bin/sh\necho "+b+" stub\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range units {
		body := "[Unit]\nDescription=" + u + "\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
		if strings.HasSuffix(u, ".timer") {
			body = "[Unit]\nDescription=" + u + "\n[Timer]\nOnBootSec=1h\n[Install]\nWantedBy=timers.target\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "systemd", u), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "roles", "api", "docker-compose.yml"), []byte("services: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := artifacts.WriteChecksums(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

var allUnits = []string{"codelab-agent.service", "codelab-firewall.service", "consul.service", "consul-template.service", "codelab-ssh-hostkeys.service", "codelab-fleet.service", "codelab-fleet.timer", "codelab-backup.service", "codelab-backup.timer", "codelab-monitor.service"}

// inDebian runs script with bash in a fresh Debian 12 container without network, the
// payload at /mnt/payload (read-only) and the provisioning scripts at /scripts.
//
// The container cannot reach the internet, so the scripts run with
// CODELAB_SKIP_APT=1 and CODELAB_SKIP_DOCKER_INSTALL=1: apt-get and the Docker Engine
// packages are skipped here (TestInstallDockerFromSignedRepository runs the apt path
// against a signed file: repository; the e2e suite runs it on a droplet over HTTP).
func inDebian(t *testing.T, payload, script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none",
		"-v", payload+":/mnt/payload:ro", "-v", scriptsDir(t)+":/scripts:ro",
		"-e", "CODELAB_SKIP_APT=1", "-e", "CODELAB_SKIP_DOCKER_INSTALL=1",
		"-e", "CODELAB_IMAGE=neo4j-base", "-e", "CODELAB_SNAPSHOT_TIME=2026-11-27-1200", "-e", "CODELAB_AGENT_VERSION=v9.9.9", "-e", "CODELAB_GIT_SHA=abc123",
		DebianImage, "bash", "-c", "set -u\n"+script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// dirty leaves what a droplet has after booting and being provisioned: the hygiene gate
// must not let any of it into a snapshot.
const dirty = `
mkdir -p /root/.ssh /var/lib/cloud/instances/i-1 /var/lib/codelab /opt/consul/raft
echo "ssh-ed25519 AAAA packer" > /root/.ssh/authorized_keys
ln -s /var/lib/cloud/instances/i-1 /var/lib/cloud/instance
echo '{}' > /var/lib/codelab/state.json
echo 1234 > /opt/consul/node-id
echo 'ls' > /root/.bash_history
echo 0123456789abcdef0123456789abcdef > /etc/machine-id
mkdir -p /var/lib/dbus /etc/codelab /root/.config/doctl /var/log/journal/0123 /var/lib/apt/lists/partial /var/lib/docker /var/lib/systemd /var/tmp/x
echo 0123456789abcdef0123456789abcdef > /var/lib/dbus/machine-id
echo token > /etc/codelab/registry-token
echo 'access-token: x' > /root/.config/doctl/config.yaml
echo journal > /var/log/journal/0123/system.journal
echo 'Accepted publickey' > /var/log/auth.log
echo 'status installed' > /var/log/dpkg.log
echo 'Release' > /var/lib/apt/lists/deb.example_dists_bookworm_InRelease
touch /var/lib/apt/lists/lock /var/lib/apt/lists/partial/x
echo id > /var/lib/docker/engine-id
echo seed > /var/lib/systemd/random-seed
echo 'host ssh-ed25519 AAAA' > /root/.ssh/known_hosts
echo 'host ssh-ed25519 AAAA' > /etc/ssh/ssh_known_hosts
touch /tmp/build.log /var/tmp/x/y
cp -a /mnt/payload /tmp/codelab-payload
`

const provision = `
/scripts/install-docker.sh && /scripts/install-base.sh && /scripts/install-neo4j.sh && /scripts/cleanup.sh && /scripts/hygiene-gate.sh
echo "PROVISION rc=$?"
`

func TestProvisioningScriptsAndHygieneGate(t *testing.T) {
	requireDocker(t)
	payload := testPayload(t, allUnits...)

	plants := []struct{ name, plant, want string }{
		{"authorized_keys", "mkdir -p /root/.ssh && touch /root/.ssh/authorized_keys", "authorized_keys (Packer's temporary key): /root/.ssh/authorized_keys"},
		{"user authorized_keys", "mkdir -p /home/debian/.ssh && touch /home/debian/.ssh/authorized_keys", "authorized_keys (Packer's temporary key): /home/debian/.ssh/authorized_keys"},
		{"consul node-id", "touch /opt/consul/node-id", "Consul data or node-id: /opt/consul is not empty"},
		{"consul config", "touch /etc/consul.d/consul.hcl", "Consul configuration (rendered at boot): /etc/consul.d is not empty"},
		{"ssh host key", "touch /etc/ssh/ssh_host_ed25519_key", "SSH host key: /etc/ssh/ssh_host_ed25519_key"},
		{"cloud-init instance", "mkdir -p /var/lib/cloud/instances/i-2", "cloud-init instance state: /var/lib/cloud/instances is not empty"},
		{"agent state", "mkdir -p /var/lib/codelab && touch /var/lib/codelab/state.json", "codelab-agent state: /var/lib/codelab"},
		{"shell history", "touch /root/.bash_history", "shell history: /root/.bash_history"},
		{"registry credentials", "mkdir -p /root/.docker && touch /root/.docker/config.json", "registry credentials: /root/.docker/config.json"},
		{"machine-id", "echo abc > /etc/machine-id", "machine-id: /etc/machine-id is not empty"},
		{"payload", "mkdir -p /tmp/codelab-payload", "uploaded payload: /tmp/codelab-payload"},
		{"registry token", "mkdir -p /etc/codelab && echo t > /etc/codelab/registry-token", "registry token: /etc/codelab/registry-token"},
		{"doctl config", "mkdir -p /root/.config/doctl && echo 'access-token: x' > /root/.config/doctl/config.yaml", "doctl credentials: /root/.config/doctl is not empty"},
		{"dbus machine-id", "mkdir -p /var/lib/dbus && echo abc > /var/lib/dbus/machine-id", "machine-id: /var/lib/dbus/machine-id is not empty"},
		{"journal", "mkdir -p /var/log/journal/abc && touch /var/log/journal/abc/system.journal", "journal file: /var/log/journal/abc/system.journal"},
		{"auth.log", "echo 'sshd: Accepted publickey for root' > /var/log/auth.log", "log with content: /var/log/auth.log"},
		{"dpkg.log", "echo 'status installed x' > /var/log/dpkg.log", "log with content: /var/log/dpkg.log"},
		{"apt lists", "mkdir -p /var/lib/apt/lists && touch /var/lib/apt/lists/deb.example_dists_bookworm_InRelease", "apt lists: /var/lib/apt/lists/deb.example_dists_bookworm_InRelease"},
		{"tmp file", "touch /tmp/build.log", "temporary file: /tmp/build.log"},
		{"var tmp file", "mkdir -p /var/tmp/cache", "temporary file: /var/tmp/cache"},
		{"docker engine id", "mkdir -p /var/lib/docker && echo id > /var/lib/docker/engine-id", "Docker engine id: /var/lib/docker/engine-id"},
		{"random seed", "mkdir -p /var/lib/systemd && head -c 32 /dev/urandom > /var/lib/systemd/random-seed", "systemd random seed: /var/lib/systemd/random-seed"},
		{"root known_hosts", "mkdir -p /root/.ssh && echo 'host ssh-ed25519 AAAA' > /root/.ssh/known_hosts", "known_hosts: /root/.ssh/known_hosts"},
		{"system known_hosts", "echo 'host ssh-ed25519 AAAA' > /etc/ssh/ssh_known_hosts", "known_hosts: /etc/ssh/ssh_known_hosts"},
		{"credential helper store", "mkdir -p /root/.password-store/docker-credential-helpers && touch /root/.password-store/docker-credential-helpers/x", "credential helper state: /root/.password-store"},
		{"docker token seed", "mkdir -p /root/.docker && touch /root/.docker/.token_seed", "credential helper state: /root/.docker/.token_seed"},
		{"docker other config", "mkdir -p /home/debian/.docker && echo '{}' > /home/debian/.docker/daemon.json", "credential helper state: /home/debian/.docker/daemon.json"},
		{"registry login file", "mkdir -p /etc/codelab/registry-auth && echo x > /etc/codelab/registry-auth/config.json", "registry credentials: /etc/codelab/registry-auth"},
		// Last: cleanup.sh does not know this folder (the gate finds it by its content).
		{"build DOCKER_CONFIG", `mkdir -p /srv/build-docker && echo '{"auths":{"r.example":{"auth":"eDp4"}}}' > /srv/build-docker/config.json`, "registry credentials (Docker client config with auths): /srv/build-docker/config.json"},
	}
	var script strings.Builder
	script.WriteString(dirty + provision)
	// What the image must contain after provisioning.
	script.WriteString(`
for f in /usr/local/bin/consul /usr/local/bin/consul-template /usr/local/bin/doctl /usr/local/bin/codelab-agent; do
	[ -x "$f" ] || echo "MISSING $f"
done
for d in /etc/consul.d /opt/consul /etc/consul-template /root/docker /root/.config/doctl /opt/neo4j/data /var/backups/neo4j; do
	[ -d "$d" ] || echo "MISSING $d"
done
for u in codelab-agent consul consul-template codelab-ssh-hostkeys codelab-monitor; do
	[ -L /etc/systemd/system/multi-user.target.wants/$u.service ] || echo "NOT ENABLED $u"
done
for u in codelab-backup codelab-fleet; do
	[ -L /etc/systemd/system/timers.target.wants/$u.timer ] || echo "NOT ENABLED $u.timer"
done
[ "$(systemctl is-enabled codelab-firewall.service)" = enabled ] || echo "NOT ENABLED codelab-firewall"
command -v iptables >/dev/null && command -v ip6tables >/dev/null || echo "MISSING iptables"
# Consul runs as consul: its user and group, its data folder, its config folder readable by it.
getent passwd consul | grep -q ':/opt/consul:/usr/sbin/nologin$' || echo "MISSING consul user: $(getent passwd consul)"
[ "$(stat -c '%U:%G %a' /opt/consul)" = "consul:consul 750" ] || echo "MISSING /opt/consul owned by consul: $(stat -c '%U:%G %a' /opt/consul)"
[ "$(stat -c '%U:%G %a' /etc/consul.d)" = "root:consul 750" ] || echo "MISSING /etc/consul.d readable by consul: $(stat -c '%U:%G %a' /etc/consul.d)"
grep -q '^allow_userdata: false' /etc/cloud/cloud.cfg.d/99-codelab.cfg || echo "MISSING cloud-init allow_userdata: false"
[ -f /usr/share/codelab/roles/api/docker-compose.yml ] || echo "MISSING role files"
grep -q '^CODELAB_AGENT_VERSION=v9.9.9$' /etc/codelab/image.env || echo "MISSING image.env"
grep -qx 'codelab-neo4j-base-2026-11-27-1200' /etc/codelab/image || echo "MISSING /etc/codelab/image"
grep -q '"agentVersion":"v9.9.9"' /etc/codelab/image.json || echo "MISSING image.json"
`)
	for i, p := range plants {
		fmt.Fprintf(&script, "( %s ) && /scripts/hygiene-gate.sh; echo \"PLANT %d rc=$?\"\n/scripts/cleanup.sh >/dev/null\n", p.plant, i)
	}
	out, err := inDebian(t, payload, script.String())
	if err != nil {
		t.Fatalf("container: %v\n%s", err, out)
	}
	if !strings.Contains(out, "PROVISION rc=0") || !strings.Contains(out, "hygiene gate: ok") {
		t.Fatalf("provisioning a dirty droplet did not pass the gate:\n%s", out)
	}
	for _, bad := range []string{"MISSING", "NOT ENABLED"} {
		if strings.Contains(out, bad) {
			t.Errorf("image layout wrong:\n%s", out)
		}
	}
	if !strings.Contains(out, "CODELAB_SKIP_DOCKER_INSTALL=1: not installing Docker Engine (test mode)") {
		t.Errorf("the test expects the Docker install to be skipped explicitly:\n%s", out)
	}
	for i, p := range plants {
		t.Run(p.name, func(t *testing.T) {
			if !strings.Contains(out, fmt.Sprintf("PLANT %d rc=1\n", i)) {
				t.Errorf("the gate did not fail with %s planted:\n%s", p.name, out)
			}
			if !strings.Contains(out, "hygiene gate:   "+p.want) {
				t.Errorf("the gate did not name %q:\n%s", p.want, out)
			}
		})
	}
}

func TestInstallFailsClearly(t *testing.T) {
	requireDocker(t)
	for _, tc := range []struct {
		name    string
		payload func(t *testing.T) string
		want    string
	}{
		{"missing unit", func(t *testing.T) string { return testPayload(t, "codelab-agent.service", "consul.service") },
			"systemd unit consul-template.service is missing from the payload"},
		{"tampered payload", func(t *testing.T) string {
			p := testPayload(t, allUnits...)
			if err := os.WriteFile(filepath.Join(p, "bin", "consul"), []byte("#!/bin/sh\necho evil\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, "payload checksum mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := inDebian(t, tc.payload(t), "cp -a /mnt/payload /tmp/codelab-payload\n/scripts/install-base.sh; echo \"INSTALL rc=$?\"\n")
			if err != nil {
				t.Fatalf("container: %v\n%s", err, out)
			}
			if !strings.Contains(out, "INSTALL rc=1") || !strings.Contains(out, tc.want) {
				t.Fatalf("want failure %q:\n%s", tc.want, out)
			}
		})
	}
}

// bakeStub is a docker CLI standing in for the Engine on the build droplet: it logs
// every call with the login it could read through DOCKER_CONFIG, and image inspect
// answers the digest of the last pull (or nothing with BAD_DIGEST=1).
const bakeStub = `mkdir -p /opt/stub /etc/codelab
cat > /usr/local/bin/docker <<'STUB'
#!/bin/sh
printf '%s | login=%s\\n' "$*" "$(tr -d ' \\n' < "$DOCKER_CONFIG/config.json" 2>/dev/null)" >> /opt/stub/calls
case "$1" in
pull) [ "${FAIL_PULL:-0}" = 1 ] && exit 1; echo "$3" > /opt/stub/pulled ;;
tag) ;;
image) [ "${BAD_DIGEST:-0}" = 1 ] || cat /opt/stub/pulled ;;
*) exit 99 ;;
esac
STUB
chmod +x /usr/local/bin/docker
echo '{"image":"services-base","fingerprint":"basefp","packages":{"docker-ce":"1"}}' > /etc/codelab/image.json
cp -a /mnt/payload /tmp/codelab-payload
`

// bakePayload is what the imager stages for a service image (writeBakePayload).
func bakePayload(t *testing.T, withToken bool) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"baked-images.json":  bakedJSON,
		"images.list":        "10.250.0.1:8766/codelab/api:v1 sha256:" + strings.Repeat("ab", 32) + "\n",
		"service.json":       `{"image":"api-base","role":"api","images":[{"ref":"10.250.0.1:8766/codelab/api:v1","digest":"sha256:` + strings.Repeat("ab", 32) + `"}]}`,
		"docker/config.json": `{"auths":{}}`,
	}
	if withToken {
		files["docker/config.json"] = `{"auths":{"10.250.0.1:8766":{"auth":"c2VjcmV0dG9rZW46c2VjcmV0dG9rZW4="}}}`
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const bakedJSON = `{
  "schemaVersion": 1,
  "role": "api",
  "version": "v1",
  "registry": "10.250.0.1:8766/codelab",
  "images": [
    {
      "ref": "10.250.0.1:8766/codelab/api:v1",
      "digest": "sha256:abababababababababababababababababababababababababababababababab"
    }
  ]
}
`

// bake-images.sh pulls by digest with the login it was given, tags as the compose file
// names the image, installs baked-images.json, records the images in image.json, and
// leaves no login behind: cleanup and the hygiene gate pass.
func TestBakeImages(t *testing.T) {
	requireDocker(t)
	out, err := inDebian(t, bakePayload(t, true), bakeStub+`
CODELAB_IMAGE=api-base CODELAB_ROLE=api /scripts/bake-images.sh; echo "BAKE rc=$?"
[ -e /tmp/codelab-payload/docker ] && echo "LOGIN LEFT"
cmp /etc/codelab/baked-images.json /tmp/codelab-payload/baked-images.json || echo "BAKED DIFFERS"
stat -c 'mode=%a' /etc/codelab/baked-images.json
cat /etc/codelab/image.json; cat /etc/codelab/image
echo "CALLS:"; cat /opt/stub/calls
/scripts/cleanup.sh >/dev/null && /scripts/hygiene-gate.sh; echo "GATE rc=$?"
`)
	if err != nil {
		t.Fatalf("container: %v\n%s", err, out)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, want := range []string{
		"BAKE rc=0", "mode=644", "GATE rc=0",
		`{"image":"services-base","fingerprint":"basefp","packages":{"docker-ce":"1"},"service":{"image":"api-base","role":"api","images":[{"ref":"10.250.0.1:8766/codelab/api:v1","digest":"` + digest + `"}]}}`,
		"codelab-api-base-2026-11-27-1200",
		"pull -q 10.250.0.1:8766/codelab/api@" + digest + " | login={\"auths\":{\"10.250.0.1:8766\":{\"auth\":",
		"tag 10.250.0.1:8766/codelab/api@" + digest + " 10.250.0.1:8766/codelab/api:v1 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"LOGIN LEFT", "BAKED DIFFERS"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s:\n%s", bad, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if cmd, _, ok := strings.Cut(line, " | login="); ok && strings.Contains(cmd, "c2VjcmV0") {
			t.Errorf("the login is on a docker command line: %s", line)
		}
	}
}

// A failed pull or a digest Docker does not record fails the bake, and the login is
// removed all the same.
func TestBakeImagesFailsClearly(t *testing.T) {
	requireDocker(t)
	for _, tc := range []struct{ name, env, want string }{
		{"pull fails", "FAIL_PULL=1", "could not pull 10.250.0.1:8766/codelab/api@sha256:"},
		{"digest differs", "BAD_DIGEST=1", "10.250.0.1:8766/codelab/api:v1: Docker does not record digest sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := inDebian(t, bakePayload(t, true), bakeStub+tc.env+` CODELAB_IMAGE=api-base /scripts/bake-images.sh; echo "BAKE rc=$?"
[ -e /tmp/codelab-payload/docker ] && echo "LOGIN LEFT"
[ -e /etc/codelab/baked-images.json ] && echo "BAKED WRITTEN"
true
`)
			if err != nil {
				t.Fatalf("container: %v\n%s", err, out)
			}
			if !strings.Contains(out, "BAKE rc=1") || !strings.Contains(out, tc.want) || strings.Contains(out, "LOGIN LEFT") || strings.Contains(out, "BAKED WRITTEN") {
				t.Fatalf("want failure %q, no login and no baked file left:\n%s", tc.want, out)
			}
		})
	}
}
