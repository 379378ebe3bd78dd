package cli_test

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/localdotest"
	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/internal/cli"
	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/codelab-app/infra/imager/internal/registry"
	"github.com/codelab-app/infra/imager/versions"
	"github.com/codelab-app/infra/internal/exitcode"
	"github.com/codelab-app/infra/tools/testenv"
)

// fakeAgent stands in for `go build` of the agent: the agent package is built for real
// by GoBuildAgent (see TestAgentBuildArgs and the e2e suite).
func fakeAgent(content string) cli.AgentBuilder {
	return func(_ context.Context, b cli.AgentBuild) error {
		return os.WriteFile(b.Out, []byte(content), 0o755)
	}
}

// fakePackerBin answers `packer version` like Packer 1.9.4, accepts `packer init`, and
// runs buildBody for `packer build`, with its arguments in "$@" and one per line in
// $ARGS_FILE; it writes the image manifest where manifest_out says. It is only for
// checking arguments, variables and output prefixing.
func fakePackerBin(t *testing.T, buildBody string) (bin, argsDir string) {
	dir := t.TempDir()
	bin = filepath.Join(dir, "packer")
	script := `#!/bin/sh
case "$1" in
version) echo "Packer v1.9.4"; exit 0 ;;
init) exit 0 ;;
build) ;;
*) echo "fake packer: unexpected command $1" >&2; exit 99 ;;
esac
for a in "$@"; do case "$a" in manifest_out=*) printf '{"packages":{"docker-ce":"5:24.0.7-1~debian.12~bookworm","containerd.io":"1.6.26-1"}}' > "${a#manifest_out=}" ;; esac; done
name=$(basename "$(eval echo \${$#})")
ARGS_FILE="` + dir + `/args-$name"
printf '%s\n' "$@" > "$ARGS_FILE"
echo "token=$DIGITALOCEAN_TOKEN url=$DIGITALOCEAN_API_URL" >> "$ARGS_FILE"
ls "$(eval echo \${$#})" >> "$ARGS_FILE"
` + buildBody
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

// buildOptions wires a build against srv with a fake agent.
func buildOptions(t *testing.T, srv *localdotest.Server, repo, packerBin, target string) (*cli.BuildOptions, *strings.Builder, *strings.Builder) {
	g, _, _ := globals(t, env{"DIGITALOCEAN_API_TOKEN": "tok"})
	var out, errb strings.Builder
	g.Stdout, g.Stderr = &out, &errb
	g.Repo, g.APIURL, g.Packer = repo, srv.URL, packerBin
	return &cli.BuildOptions{
		Globals: g, Target: target, Regions: []string{"nyc3"}, AgentVersion: "v1.2.3", GitSHA: "0123456789abcdef",
		BuildAgent:  fakeAgent("agent-v1"),
		BuildModule: fakeModule,
		Now:         func() time.Time { return time.Date(2026, 11, 27, 18, 30, 0, 0, time.UTC) },
	}, &out, &errb
}

// fakeModule stands in for building doctl from its module (TestBuildModuleForReal builds it).
func fakeModule(_ context.Context, _ string, a artifacts.Artifact, out string, _ io.Writer) error {
	return os.WriteFile(out, []byte("built "+a.Name+" "+a.Version), 0o755)
}

// fingerprints computes what a build of repo would store, the way RunBuild does.
func fingerprint(t *testing.T, repo, family, agent, localDir string) string {
	v, err := versions.Load(filepath.Join(repo, versions.File))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := artifacts.Resolve(v, artifacts.Catalog, localDir)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "codelab-agent")
	if err := os.WriteFile(bin, []byte(agent), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := cli.Inputs(repo, family, bin, arts)
	if err != nil {
		t.Fatal(err)
	}
	return images.Fingerprint(in)
}

const mustNotBuild = `echo "fake packer: build must not run" >&2; touch "$(dirname "$0")/BUILT"; exit 1`

func TestBuildSkipsSameFingerprint(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	fp := fingerprint(t, repo, "services-base", "agent-v1", "")
	srv.AddSnapshot(localdotest.Snapshot{ID: 10, Name: "codelab-services-base-2026-11-01-0000", Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Tags: []string{images.TagFingerprint + fp}})
	// Same fingerprint on another family does not count.
	srv.AddSnapshot(localdotest.Snapshot{ID: 11, Name: "codelab-neo4j-base-2026-11-01-0000", Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Tags: []string{images.TagFingerprint + fp}})
	bin, dir := fakePackerBin(t, mustNotBuild)
	o, out, _ := buildOptions(t, srv, repo, bin, "app")
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	want := "services-base: up to date: snapshot codelab-services-base-2026-11-01-0000 (id 10) has fingerprint " + fp + "; skipping (--force rebuilds)"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output %q lacks %q", out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "BUILT")); err == nil {
		t.Fatal("packer build ran although the fingerprint matched")
	}
	// The one write is the write-scope check: creating the codelab-imager tag, which
	// changes nothing once it exists.
	if n := srv.Count("POST") + srv.Count("PUT") + srv.Count("DELETE"); n != 1 || srv.Count("POST /v2/tags") != 1 {
		t.Fatalf("a skipped build changed the account: %v", srv.Requests())
	}

	// A changed input (the agent) changes the fingerprint: no skip.
	o, out, _ = buildOptions(t, srv, repo, bin, "app")
	o.BuildAgent = fakeAgent("agent-v2")
	o.LocalArtifacts = localArtifacts(t, repo) // no downloads in tests
	if err := cli.RunBuild(t.Context(), o); err == nil || strings.Contains(out.String(), "up to date") {
		t.Fatalf("a new agent must rebuild: err %v, out %q", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "BUILT")); err != nil {
		t.Fatal("packer build did not run for a changed agent")
	}
}

// localArtifacts is a folder with every artifact as a local file (no downloads).
func localArtifacts(t *testing.T, repo string) string {
	dir := t.TempDir()
	for _, s := range artifacts.Catalog {
		if s.LocalName != "" {
			if err := os.WriteFile(filepath.Join(dir, s.LocalName), []byte("local "+s.Name), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func TestBuildAllRunsPackerAndTagsSnapshots(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	local := localArtifacts(t, repo)
	fp := fingerprint(t, repo, "services-base", "agent-v1", local)
	// Same fingerprint exists, but --force rebuilds.
	srv.AddSnapshot(localdotest.Snapshot{ID: 10, Name: "codelab-services-base-2026-11-01-0000", Created: time.Now(), Tags: []string{images.TagFingerprint + fp}})
	// The snapshots the fake Packer reports (as Packer's would have made them).
	for id, fam := range serviceIDs {
		srv.AddSnapshot(localdotest.Snapshot{ID: id, Name: "codelab-" + fam + "-2026-11-27-1830", Created: time.Now()})
	}
	reg := newAppRegistry(t)
	digests := reg.pushAll(t, "v7")
	bin, dir := fakePackerBin(t, fakeServiceIDs+`
echo "1,,ui,say,==> digitalocean: Creating droplet..."
echo "1,,ui,message,    digitalocean: hygiene gate: ok"
echo "2,digitalocean,artifact,0,id,nyc3:$id"
`)
	o, out, errb := buildOptions(t, srv, repo, bin, "all")
	o.Force = true
	o.Registry, o.AppVersion = reg.Path, "v7"
	o.Globals.Getenv = env{"DIGITALOCEAN_API_TOKEN": "tok", "CODELAB_LOCAL_ARTIFACTS": local, "CODELAB_REGISTRY_TOKEN": "regtok"}.get
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out, errb)
	}
	if !strings.Contains(out.String(), "rebuilding (--force)") {
		t.Errorf("no --force note in %q", out)
	}
	for _, fam := range []string{"services-base", "neo4j-base"} {
		args, err := os.ReadFile(filepath.Join(dir, "args-"+filepathBaseStage(t, dir, fam)))
		if err != nil {
			t.Fatalf("%s: packer build did not run: %v", fam, err)
		}
		a := string(args)
		for _, want := range []string{
			"build\n-machine-readable\n-color=false\n",
			"-var-file=" + filepath.Join(repo, "packer", "versions.pkrvars.hcl") + "\n",
			"api_url=" + srv.URL + "\n",
			"scripts_dir=" + filepath.Join(repo, "packer", "scripts") + "\n",
			"region=nyc3\n", `snapshot_regions=["nyc3"]` + "\n", "base_image=debian-12-x64\n", "local_artifacts=true\n", "snapshot_time=2026-11-27-1830\n", "agent_version=v1.2.3\n", "git_sha=0123456789abcdef\n",
			"build_id=" + fam + "-20261127-183000-",
			"token=tok url=" + srv.URL,
			"variables.pkr.hcl\n", fam + ".pkr.hcl\n",
		} {
			if !strings.Contains(a, want) {
				t.Errorf("%s: packer args lack %q:\n%s", fam, want, a)
			}
		}
		if !strings.Contains(a, "plugins.pkr.hcl\n") || strings.Contains(a, "-debug") || strings.Contains(a, "PACKER_LOG") {
			t.Errorf("%s: Packer gets the plugin file, and no -debug or log unless asked:\n%s", fam, a)
		}
		if strings.Contains(a, "tok\n") || strings.Contains(a, "=tok\n") {
			t.Errorf("%s: the token must not be on the command line", fam)
		}
		if !strings.Contains(errb.String(), fam+" | ==> digitalocean: Creating droplet...\n") || !strings.Contains(errb.String(), fam+" |     digitalocean: hygiene gate: ok\n") {
			t.Errorf("%s: output not prefixed:\n%s", fam, errb)
		}
	}
	for id, fam := range map[int]string{801: "services-base", 802: "neo4j-base"} {
		tags := srv.Image(id).Tags
		if !slices.Contains(tags, "codelab-image:"+fam) || !slices.Contains(tags, "codelab-agent:v1_2_3") || !slices.Contains(tags, "codelab-git:0123456789abcdef") ||
			!slices.Contains(tags, "codelab-pkg:docker-ce:5:24_0_7-1_debian_12_bookworm") || !slices.Contains(tags, "codelab-local-artifacts") || len(tags) != 7 {
			t.Errorf("snapshot %d tags = %v", id, tags)
		}
	}
	if !strings.Contains(out.String(), "LOCAL-ARTIFACTS BUILD") || !strings.Contains(out.String(), "[LOCAL-ARTIFACTS build, not a production image]") {
		t.Errorf("a local-artifacts build must say so: %s", out)
	}
	if !strings.Contains(out.String(), "services-base: built codelab-services-base-2026-11-27-1830 (id 801, regions nyc3)") {
		t.Errorf("summary: %s", out)
	}
	// The service images build on the services base just built (801), after it, each
	// with its role's images resolved to digests, the login in a 0600 file and never on
	// a command line.
	for id, fam := range serviceIDs {
		role := strings.TrimSuffix(fam, "-base")
		if role == "services" || role == "neo4j" {
			continue
		}
		a := readFile(t, filepath.Join(dir, "args-role-"+role))
		for _, want := range []string{"base_image=801\n", "role=" + role + "\n", "services.pkr.hcl\n", "variables.pkr.hcl\n", "base_fingerprint=" + fp + "\n"} {
			if !strings.Contains(a, want) {
				t.Errorf("%s: packer args lack %q:\n%s", fam, want, a)
			}
		}
		if strings.Contains(a, "regtok") {
			t.Errorf("%s: the registry token is on Packer's command line", fam)
		}
		ref := reg.Path + "/" + role + ":v7"
		want := `{
  "schemaVersion": 1,
  "role": "` + role + `",
  "version": "v7",
  "registry": "` + reg.Path + `",
  "images": [
    {
      "ref": "` + ref + `",
      "digest": "` + digests[role] + `"
    }
  ]
}
`
		payload := filepath.Join(dir, "payload-"+role)
		if got := readFile(t, filepath.Join(payload, "baked-images.json")); got != want {
			t.Errorf("%s: baked-images.json\n%s\nwant\n%s", fam, got, want)
		}
		if got := readFile(t, filepath.Join(payload, "images.list")); got != ref+" "+digests[role]+"\n" {
			t.Errorf("%s: images.list = %q", fam, got)
		}
		st, err := os.Stat(filepath.Join(payload, "docker", "config.json"))
		if err != nil || st.Mode().Perm() != 0o600 || !strings.Contains(readFile(t, filepath.Join(payload, "docker", "config.json")), `"auth":`) {
			t.Errorf("%s: registry login %v %v", fam, st, err)
		}
		tags := srv.Image(id).Tags
		if !slices.Contains(tags, "codelab-image:"+fam) || !slices.Contains(tags, "codelab-base-fp:"+fp) || !slices.Contains(tags, "codelab-app-version:v7") ||
			!slices.Contains(tags, "codelab-app-image:"+role+":"+strings.ReplaceAll(digests[role], "sha256:", "sha256:")) || len(tags) != 10 {
			t.Errorf("snapshot %d tags = %v", id, tags)
		}
		if !strings.Contains(out.String(), fam+": built codelab-"+fam+"-2026-11-27-1830 (id "+fmt.Sprint(id)) {
			t.Errorf("summary lacks %s: %s", fam, out)
		}
	}
	if n := srv.Count("GET /v2/droplets?page=1&per_page=200&tag_name=codelab-build"); n != 6 {
		t.Errorf("leftover checks = %d, want one per image: %v", n, srv.Requests())
	}
}

// serviceIDs are the snapshot ids fakeServiceIDs reports, by family.
var serviceIDs = map[int]string{801: "services-base", 802: "neo4j-base", 803: "api-base", 804: "web-base", 805: "landing-base", 806: "sites-base"}

// fakeServiceIDs picks the snapshot id the fake Packer reports from the staged template
// (neo4j) or the role variable, records a service build's arguments as args-role-<role>
// and copies its payload (deleted after the build) to payload-<role>.
const fakeServiceIDs = `
id=801
case "$ARGS_FILE" in *neo4j*) id=802 ;; esac
for a in "$@"; do case "$a" in role=*) role=${a#role=} ;; payload_dir=*) payload=${a#payload_dir=} ;; esac; done
case "$role" in api) id=803 ;; web) id=804 ;; landing) id=805 ;; sites) id=806 ;; esac
if [ -n "$role" ]; then cp "$ARGS_FILE" "$(dirname "$ARGS_FILE")/args-role-$role"; cp -a "$payload" "$(dirname "$ARGS_FILE")/payload-$role"; fi
`

// filepathBaseStage finds the staged template folder name the fake recorded for family.
func filepathBaseStage(t *testing.T, dir, family string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "args-imager-"+family+"-*"))
	if len(m) != 1 {
		t.Fatalf("want one packer build of %s, found %v", family, m)
	}
	return strings.TrimPrefix(filepath.Base(m[0]), "args-")
}

func TestBuildFailureCleansUpLeftovers(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	packerKey := srv.AddKey("packer-6543")
	srv.AddKey("ci")
	// Like a Packer that dies after creating its droplet: the droplet stays behind.
	bin, _ := fakePackerBin(t, `
for a in "$@"; do case "$a" in build_id=*) id=${a#build_id=} ;; esac; done
curl -sf -X POST -H "Authorization: Bearer $DIGITALOCEAN_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"packer-x\",\"region\":\"nyc3\",\"size\":\"s-2vcpu-4gb\",\"image\":\"debian-12-x64\",\"tags\":[\"codelab-imager\",\"codelab-build:$id\"]}" "${DIGITALOCEAN_API_URL%/}/v2/droplets" >/dev/null || exit 98
echo "1,,ui,error,Build 'digitalocean' errored: provisioner failed"
exit 1
`)
	o, out, errb := buildOptions(t, srv, repo, bin, "app")
	o.Globals.Getenv = env{"DIGITALOCEAN_API_TOKEN": "tok", "CODELAB_LOCAL_ARTIFACTS": localArtifacts(t, repo)}.get
	err := cli.RunBuild(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "packer build failed") {
		t.Fatalf("err = %v\n%s", err, errb)
	}
	if n, left := srv.Count("DELETE /v2/droplets/"), srv.Droplets(); n != 1 || len(left) != 0 {
		t.Fatalf("leftover droplet not deleted: %d deletes, remaining %v", n, left)
	}
	for _, want := range []string{"services-base | deleted leftover build droplet packer-x", fmt.Sprintf("services-base | SSH key packer-6543 (id %d) looks like a temporary Packer key", packerKey)} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, errb)
		}
	}
	if strings.Contains(errb.String(), "key ci") {
		t.Error("only packer-* keys are suspects")
	}
	if !strings.Contains(out.String(), "services-base: FAILED") {
		t.Errorf("summary: %s", out)
	}
}

func TestBuildRefusesUnpinnedArtifacts(t *testing.T) {
	repo := fixtureRepo(t)
	vf := regexp.MustCompile(`(?m)^consul_sha256 *= *".*"$`).ReplaceAllString(readFile(t, filepath.Join(repoRoot(t), versions.File)), `consul_sha256 = ""`)
	if err := os.WriteFile(filepath.Join(repo, versions.File), []byte(vf), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	bin, _ := fakePackerBin(t, mustNotBuild)
	o, _, _ := buildOptions(t, srv, repo, bin, "all")
	err := cli.RunBuild(t.Context(), o)
	if err == nil || !regexp.MustCompile(`versions.pkrvars.hcl:\d+: consul_sha256: empty`).MatchString(err.Error()) {
		t.Fatalf("err = %v", err)
	}
}

func TestBuildNeedsUnits(t *testing.T) {
	repo := fixtureRepo(t)
	if err := os.Remove(filepath.Join(repo, "systemd", "consul.service")); err != nil {
		t.Fatal(err)
	}
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	bin, _ := fakePackerBin(t, mustNotBuild)
	o, _, _ := buildOptions(t, srv, repo, bin, "app")
	if err := cli.RunBuild(t.Context(), o); err == nil || !strings.Contains(err.Error(), "systemd unit consul.service is missing") {
		t.Fatalf("err = %v", err)
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAgentBuildArgs(t *testing.T) {
	dir := t.TempDir()
	goBin := filepath.Join(dir, "go")
	if err := os.WriteFile(goBin, []byte("#!/bin/sh\nprintf '%s\\n' \"$PWD\" \"CGO_ENABLED=$CGO_ENABLED\" \"$@\" > "+dir+"/args\ntouch \"$6\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "codelab-agent")
	err := cli.GoBuildAgent(t.Context(), cli.AgentBuild{GoBin: goBin, Repo: dir, Out: out, Version: "v1.0.0", Commit: "abc", Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	want := dir + "\nCGO_ENABLED=0\nbuild\n-trimpath\n-ldflags\n-s -w -X github.com/codelab-app/infra/agent/internal/version.Version=v1.0.0 -X github.com/codelab-app/infra/agent/internal/version.Commit=abc\n-o\n" + out + "\n./agent/cmd/codelab-agent\n"
	if got := readFile(t, filepath.Join(dir, "args")); got != want {
		t.Fatalf("go called with\n%s\nwant\n%s", got, want)
	}
	if err := cli.GoBuildAgent(t.Context(), cli.AgentBuild{GoBin: goBin, Repo: dir, Out: out, Version: "v 1", Commit: "abc"}); err == nil {
		t.Fatal("a version with a space must be refused")
	}
}

// The real agent builds as the imager builds it: static, with version and commit.
func TestGoBuildAgentForReal(t *testing.T) {
	testenv.Integration(t, "go")
	repo := repoRoot(t)
	if _, err := os.Stat(filepath.Join(repo, "agent", "cmd", "codelab-agent")); err != nil {
		t.Fatalf("integration prerequisite: %v", err)
	}
	out := filepath.Join(t.TempDir(), "codelab-agent")
	if err := cli.GoBuildAgent(t.Context(), cli.AgentBuild{Repo: repo, Out: out, Version: "v0.0.0-test", Commit: "c0ffee", Stderr: os.Stderr}); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("codelab-agent is dynamically linked; want CGO_ENABLED=0")
		}
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine = %v, want x86-64", f.Machine)
	}
	v, err := exec.Command(out, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "v0.0.0-test") || !strings.Contains(string(v), "c0ffee") {
		t.Fatalf("codelab-agent --version = %q, %v", v, err)
	}
}

// --plan --json lists every artifact with a verification method, builds nothing, and
// needs no token.
func TestBuildPlanJSON(t *testing.T) {
	repo := fixtureRepo(t)
	bin, dir := fakePackerBin(t, mustNotBuild)
	g, out, errb := globals(t, env{})
	g.Repo, g.Packer = repo, bin
	reg := newAppRegistry(t)
	digests := reg.pushAll(t, "latest")
	o := &cli.BuildOptions{Globals: g, Target: "all", Plan: true, JSON: true, AgentVersion: "v9", GitSHA: "abc",
		Regions: []string{"nyc3", "fra1"}, BuildAgent: fakeAgent("agent"), BuildModule: fakeModule, Registry: reg.Path}
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errb)
	}
	var p cli.PlanOutput
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p.SchemaVersion != 1 || p.BaseImage != "debian-12-x64" || p.BuildRegion != "nyc3" || strings.Join(p.Regions, ",") != "nyc3,fra1" || p.LocalArtifacts {
		t.Errorf("plan header: %+v", p)
	}
	if len(p.Images) != 6 || p.Images[0].Action != "unknown" || len(p.Images[0].Fingerprint) != 32 {
		t.Errorf("images: %+v", p.Images)
	}
	for _, im := range p.Images[2:] {
		role := strings.TrimSuffix(im.Family, "-base")
		if im.Action != "unknown" || len(im.Fingerprint) != 32 || im.Base != "services-base" || im.BaseFingerprint != p.Images[0].Fingerprint ||
			im.AppVersion != "latest" || len(im.Baked) != 1 || im.Baked[0].Ref != reg.Path+"/"+role+":latest" || im.Baked[0].Digest != digests[role] {
			t.Errorf("service image in the plan: %+v", im)
		}
	}
	names := map[string]bool{}
	for _, a := range p.Artifacts {
		names[a.Name] = true
		if a.Verified == "" || a.Source == "" || a.Version == "" {
			t.Errorf("artifact without source, version or verification: %+v", a)
		}
	}
	for _, n := range []string{"consul", "consul-template", "doctl", "docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"} {
		if !names[n] {
			t.Errorf("plan lacks %s", n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "BUILT")); err == nil {
		t.Fatal("--plan ran packer build")
	}
}

// A token that cannot write (read scope only: the local DigitalOcean answers its writes
// with 403 forbidden) fails before Packer starts, naming the missing scope.
func TestBuildRefusesReadOnlyToken(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "rw", ReadOnlyTokens: []string{"tok"}})
	dir := t.TempDir()
	bin := filepath.Join(dir, "packer")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+dir+"/RAN\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o, _, _ := buildOptions(t, srv, repo, bin, "app")
	err := cli.RunBuild(t.Context(), o)
	if !errors.Is(err, images.ErrReadOnly) || !strings.Contains(err.Error(), "no write scope") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "RAN")); err == nil {
		t.Fatal("packer ran")
	}
	if n := srv.Count("POST /v2/tags"); n != 1 || srv.Count("POST /v2/droplets") != 0 || len(srv.Droplets()) != 0 {
		t.Fatalf("want one refused write (the scope check) and nothing else: %v", srv.Requests())
	}
}

// transferSh is a shell function doing what the DigitalOcean plugin does for
// snapshot_regions: `transfer ID REGION` starts the image's transfer action and waits
// until the API lists the region.
const transferSh = `transfer() {
  curl -sf -X POST -H "Authorization: Bearer $DIGITALOCEAN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"type\":\"transfer\",\"region\":\"$2\"}" "${DIGITALOCEAN_API_URL%/}/v2/images/$1/actions" >/dev/null || exit 97
  for i in $(seq 100); do
    curl -sf -H "Authorization: Bearer $DIGITALOCEAN_TOKEN" "${DIGITALOCEAN_API_URL%/}/v2/images/$1" | grep -q "\"$2\"" && return 0
    sleep 0.1
  done
  echo "transfer of $1 to $2 did not complete" >&2
  exit 96
}
`

// build --json prints what it built for the next CI step, and only JSON on stdout.
func TestBuildJSON(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	srv.AddSnapshot(localdotest.Snapshot{ID: 901, Name: "codelab-services-base-2026-11-27-1830", Created: time.Now()})
	// Like the plugin 1.4.1: it transfers the snapshot through the API, and its artifact
	// names only the build region; the API knows the rest.
	bin, _ := fakePackerBin(t, transferSh+`transfer 901 fra1
echo "2,digitalocean,artifact,0,id,nyc3:901"`)
	o, out, errb := buildOptions(t, srv, repo, bin, "app")
	o.JSON, o.LocalArtifacts, o.Regions = true, localArtifacts(t, repo), []string{"nyc3", "fra1"}
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errb)
	}
	var got cli.BuildOutput
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if len(got.Images) != 1 || got.Images[0].Status != "built" || got.Images[0].ID != 901 || strings.Join(got.Images[0].Regions, ",") != "nyc3,fra1" ||
		got.Images[0].Packages["containerd.io"] != "1.6.26-1" || !got.LocalArtifacts || got.Images[0].Name != "codelab-services-base-2026-11-27-1830" {
		t.Fatalf("build JSON: %s", out)
	}
}

func TestVersionFlag(t *testing.T) {
	g, out, _ := globals(t, env{})
	if err := run(t, g, "--version"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "imager ") || !strings.Contains(out.String(), "(commit ") {
		t.Fatalf("--version = %q", out)
	}
}

func TestStepNeedsOneImage(t *testing.T) {
	g, _, _ := globals(t, env{"DIGITALOCEAN_API_TOKEN": "tok"})
	err := run(t, g, "build", "all", "--step")
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "one image at a time") {
		t.Fatalf("err = %v", err)
	}
}

// A snapshot missing from a region --regions asked for fails the build, naming it.
func TestBuildChecksTheSnapshotRegions(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	srv.AddSnapshot(localdotest.Snapshot{ID: 901, Name: "codelab-services-base-2026-11-27-1830", Created: time.Now(), Regions: []string{"nyc3"}})
	bin, dir := fakePackerBin(t, `echo "2,digitalocean,artifact,0,id,nyc3:901"`)
	o, _, errb := buildOptions(t, srv, repo, bin, "app")
	o.LocalArtifacts, o.Regions = localArtifacts(t, repo), []string{"nyc3", "fra1"}
	err := cli.RunBuild(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "snapshot 901 is in nyc3 but not in fra1") {
		t.Fatalf("err = %v\n%s", err, errb)
	}
	args := readFile(t, filepath.Join(dir, "args-"+filepathBaseStage(t, dir, "services-base")))
	if !strings.Contains(args, `snapshot_regions=["nyc3","fra1"]`+"\n") || !strings.Contains(args, "region=nyc3\n") {
		t.Errorf("packer args:\n%s", args)
	}
}

// --debug: Packer's log and the imager's debug logs, both under the image's prefix; no
// pausing -debug (that is --step).
func TestBuildDebugStreamsLogsWithThePrefix(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	srv.AddSnapshot(localdotest.Snapshot{ID: 901, Name: "codelab-services-base-2026-11-27-1830", Created: time.Now(), Regions: []string{"nyc3"}})
	bin, dir := fakePackerBin(t, `echo "packer log: PACKER_LOG=$PACKER_LOG" >&2
echo "2,digitalocean,artifact,0,id,nyc3:901"`)
	o, out, errb := buildOptions(t, srv, repo, bin, "app")
	o.Debug, o.LocalArtifacts = true, localArtifacts(t, repo)
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errb)
	}
	for _, want := range []string{"services-base | packer log: PACKER_LOG=1\n", "services-base | time=", "level=DEBUG msg=\"packer build\""} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, errb)
		}
	}
	if args := readFile(t, filepath.Join(dir, "args-"+filepathBaseStage(t, dir, "services-base"))); strings.Contains(args, "-debug\n") {
		t.Errorf("--debug must not pass Packer's pausing -debug:\n%s", args)
	}
}

// `build api` with no services base builds it first, then api on it; with the base
// there, only api, on that snapshot; with api's fingerprint there, nothing; a new app
// image (same tag, new digest) means a rebuild.
func TestBuildServiceImageOnTheServicesBase(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	local := localArtifacts(t, repo)
	reg := newAppRegistry(t)
	reg.push(t, "api", "latest")
	for id, fam := range serviceIDs {
		srv.AddSnapshot(localdotest.Snapshot{ID: id, Name: "codelab-" + fam + "-2026-11-27-1830", Created: time.Now()})
	}
	bin, dir := fakePackerBin(t, fakeServiceIDs+`echo "2,digitalocean,artifact,0,id,nyc3:$id"`)
	opts := func() (*cli.BuildOptions, *strings.Builder, *strings.Builder) {
		o, out, errb := buildOptions(t, srv, repo, bin, "api")
		o.Registry, o.LocalArtifacts = reg.Path, local
		return o, out, errb
	}
	o, out, errb := opts()
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errb)
	}
	fp := fingerprint(t, repo, "services-base", "agent-v1", local)
	for _, want := range []string{
		"services-base: no snapshot has fingerprint " + fp + "; building it first",
		"services-base: built codelab-services-base-2026-11-27-1830 (id 801",
		"api-base: built codelab-api-base-2026-11-27-1830 (id 803",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if a := readFile(t, filepath.Join(dir, "args-role-api")); !strings.Contains(a, "base_image=801\n") {
		t.Errorf("api not built on the new base:\n%s", a)
	}
	// The base now has the fingerprint (the build tagged 801). A new app image under the
	// same tag changes api's fingerprint: api alone is rebuilt, on 801.
	if err := os.Remove(filepath.Join(dir, "args-role-api")); err != nil {
		t.Fatal(err)
	}
	reg.push(t, "api", "latest")
	o, out, errb = opts()
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errb)
	}
	if !strings.Contains(out.String(), "services-base: the service images build on snapshot codelab-services-base-2026-11-27-1830 (id 801)") ||
		strings.Contains(out.String(), "services-base: built") || !strings.Contains(out.String(), "api-base: built") {
		t.Errorf("a new app image must rebuild api on the existing base:\n%s", out)
	}
	if a := readFile(t, filepath.Join(dir, "args-role-api")); !strings.Contains(a, "base_image=801\n") {
		t.Errorf("api not built on the existing base:\n%s", a)
	}
	// Same inputs again: api is up to date, and the base is not mentioned.
	o, out, _ = opts()
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "api-base: up to date") || strings.Contains(out.String(), "services-base") {
		t.Errorf("want api up to date and nothing said of the base:\n%s", out)
	}
}

// A --version the registry lacks fails naming the image and tag before any droplet is
// created or Packer runs; so does a registry that wants a token the environment lacks.
func TestBuildServiceImageBadVersionOrNoToken(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	reg := newAppRegistry(t)
	reg.push(t, "api", "v1")
	bin, dir := fakePackerBin(t, mustNotBuild)
	o, _, _ := buildOptions(t, srv, repo, bin, "api")
	o.Registry, o.AppVersion, o.LocalArtifacts = reg.Path, "v2", localArtifacts(t, repo)
	err := cli.RunBuild(t.Context(), o)
	if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), "api-base: image "+reg.Path+"/api tag v2") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "BUILT")); err == nil || srv.Count("POST /v2/droplets") != 0 {
		t.Fatal("a droplet or Packer ran for a version the registry lacks")
	}
	// A registry that answers 401 to an anonymous pull: the error says which variable.
	locked := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="codelab"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
	}))
	defer locked.Close()
	o, _, _ = buildOptions(t, srv, repo, bin, "services")
	o.Registry, o.LocalArtifacts = strings.TrimPrefix(locked.URL, "http://")+"/codelab", localArtifacts(t, repo)
	err = cli.RunBuild(t.Context(), o)
	if !errors.Is(err, registry.ErrUnauthorized) || !strings.Contains(err.Error(), "set CODELAB_REGISTRY_TOKEN") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "BUILT")); err == nil || srv.Count("POST /v2/droplets") != 0 {
		t.Fatal("a droplet or Packer ran without registry access")
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// `imager build all --plan`, as printed: golden file testdata/plan-all.txt (-update
// regenerates). Fingerprints and the registry's address vary with the inputs and the
// test's port and are replaced; the application digests are fixed.
func TestBuildPlanTextGolden(t *testing.T) {
	repo := fixtureRepo(t)
	bin, _ := fakePackerBin(t, mustNotBuild)
	g, out, errb := globals(t, env{})
	g.Repo, g.Packer = repo, bin
	reg := newAppRegistry(t)
	for _, role := range []string{"api", "web", "landing", "sites"} {
		reg.pushFixed(t, role, "v1")
	}
	o := &cli.BuildOptions{Globals: g, Target: "all", Plan: true, AgentVersion: "v9", GitSHA: "abc", AppVersion: "v1",
		Regions: []string{"nyc3"}, BuildAgent: fakeAgent("agent"), BuildModule: fakeModule, Registry: reg.Path}
	if err := cli.RunBuild(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errb)
	}
	got := regexp.MustCompile(`\b[0-9a-f]{32}\b`).ReplaceAllString(out.String(), "<fingerprint>")
	got = strings.ReplaceAll(got, reg.Path, "<registry>/codelab")
	// The artifact table's URLs and versions are the versions file's: not this test's.
	got = got[:strings.Index(got, "ARTIFACT")]
	p := filepath.Join("testdata", "plan-all.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readFile(t, p); got != want {
		t.Fatalf("plan differs from %s (-update regenerates):\n%s", p, got)
	}
}

// A services base that is not in the build region fails the service image naming both,
// before Packer starts.
func TestBuildServiceImageNeedsTheBaseInTheBuildRegion(t *testing.T) {
	repo := fixtureRepo(t)
	srv := localdotest.New(t, localdotest.Options{Token: "tok"})
	local := localArtifacts(t, repo)
	fp := fingerprint(t, repo, "services-base", "agent-v1", local)
	srv.AddSnapshot(localdotest.Snapshot{ID: 10, Name: "codelab-services-base-2026-11-01-0000", Created: time.Now(), Regions: []string{"fra1"}, Tags: []string{images.TagFingerprint + fp}})
	reg := newAppRegistry(t)
	reg.push(t, "web", "latest")
	bin, dir := fakePackerBin(t, mustNotBuild)
	o, out, _ := buildOptions(t, srv, repo, bin, "web")
	o.Registry, o.LocalArtifacts = reg.Path, local
	err := cli.RunBuild(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "services-base snapshot codelab-services-base-2026-11-01-0000 (id 10) is in fra1, not in the build region nyc3") {
		t.Fatalf("err = %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "BUILT")); err == nil {
		t.Fatal("packer build ran")
	}
}
