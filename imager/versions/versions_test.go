package versions_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/codelab-app/infra/imager/versions"
)

func committed(t *testing.T) (string, []byte) {
	t.Helper()
	_, f, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(f), "..", "..", versions.File)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestCommittedFileParses(t *testing.T) {
	p, b := committed(t)
	v, err := versions.Parse(p, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Get("docker_apt_key_fingerprint"); got != "9DC858229FC7DD38854AE2D88D81803C0EBFCD88" {
		t.Errorf("Docker key fingerprint %q", got)
	}
	if got := strings.Join(v.Regions(), ","); got != "nyc3,fra1" {
		t.Errorf("regions %q", got)
	}
	if v.Line("consul_version") == 0 {
		t.Error("no line for consul_version")
	}
}

// Every variable of the schema is declared in the shared Packer variables, so Packer and
// the imager read the same file the same way.
func TestSchemaMatchesPackerVariables(t *testing.T) {
	p, _ := committed(t)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "common", "variables.pkr.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range versions.Schema {
		if !regexp.MustCompile(`(?m)^variable "` + s.Name + `" \{`).Match(b) {
			t.Errorf("%s is in the schema but not declared in packer/common/variables.pkr.hcl", s.Name)
		}
	}
}

func TestBadFilesNameTheLine(t *testing.T) {
	p, good := committed(t)
	replace := func(old, new string) string {
		if !strings.Contains(string(good), old) {
			t.Fatalf("committed file lacks %q", old)
		}
		return strings.Replace(string(good), old, new, 1)
	}
	lineOf := func(src, needle string) int {
		i := strings.Index(src, needle)
		return strings.Count(src[:i], "\n") + 1
	}
	cases := []struct {
		name, src, needle, want string
	}{
		{"unknown variable", string(good) + "\ndockr_ce_version = \"1\"\n", "dockr_ce_version", "unknown variable"},
		{"duplicate", string(good) + "\nconsul_version = \"1.17.2\"\n", "consul_version = \"1.17.2\"", "consul_version"},
		{"malformed version", replace(`consul_version = "1.17.1"`, `consul_version = "1.17"`), `consul_version = "1.17"`, `"1.17" is not a version`},
		{"unquoted version", replace(`consul_version = "1.17.1"`, `consul_version = 1.17`), `consul_version = 1.17`, "want a quoted string"},
		{"short pin", replace(`"388889321d6aaf389ee87acc247ea9885e684a1581c8ebfbeab7348abd7c0214"`, `"388889321d6aaf389ee87acc247ea9885e684a1581c8ebfbeab7348abd7c021"`), `consul_sha256  = "388889321d6aaf389ee87acc247ea9885e684a1581c8ebfbeab7348abd7c021"`, "has 63 hex digits; a SHA-256 has 64"},
		{"empty pin", replace(`"388889321d6aaf389ee87acc247ea9885e684a1581c8ebfbeab7348abd7c0214"`, `""`), `consul_sha256  = ""`, "empty"},
		{"fingerprint with spaces", replace(`"9DC858229FC7DD38854AE2D88D81803C0EBFCD88"`, `"9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88"`), `docker_apt_key_fingerprint    = "9DC8 `, "only hex digits"},
		{"long fingerprint", replace(`"9DC858229FC7DD38854AE2D88D81803C0EBFCD88"`, `"9DC858229FC7DD38854AE2D88D81803C0EBFCD880"`), `docker_apt_key_fingerprint    = "9DC`, "has 41 hex digits"},
		{"bad apt version", replace(`docker_ce_version             = "5:27.3.1-1~debian.12~bookworm"`, `docker_ce_version = "newest"`), `docker_ce_version = "newest"`, "not an apt version"},
		{"bad region", replace(`["nyc3", "fra1"]`, `["nyc3", "Frankfurt"]`), `snapshot_regions = [`, "not a region slug"},
		{"trailing comment is a comment", replace(`consul_version = "1.17.1"`, `consul_version = "1.17" # was 1.17.1`), `consul_version = "1.17" #`, `"1.17" is not a version`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := versions.Parse(p, []byte(c.src))
			if err == nil {
				t.Fatal("no error")
			}
			line := lineOf(c.src, c.needle)
			wantLoc := p + ":" + strconv.Itoa(line) + ":"
			if !strings.Contains(err.Error(), wantLoc) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to name %s and say %q", err, wantLoc, c.want)
			}
			var ve *versions.Error
			if !errors.As(err, &ve) || ve.Line != line {
				t.Fatalf("not a *versions.Error on line %d: %#v", line, err)
			}
		})
	}
}

func TestMissingVariableIsNamed(t *testing.T) {
	p, good := committed(t)
	src := regexp.MustCompile(`(?m)^doctl_version = .*$`).ReplaceAllString(string(good), "")
	_, err := versions.Parse(p, []byte(src))
	if err == nil || !strings.Contains(err.Error(), "doctl_version: not set") {
		t.Fatalf("err %v", err)
	}
}

func TestOverride(t *testing.T) {
	p, good := committed(t)
	v, err := versions.Parse(p, good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	op := filepath.Join(dir, "o.pkrvars.hcl")
	if err := os.WriteFile(op, []byte("docker_apt_url = \"http://10.0.0.1:8767\"\nsnapshot_regions = [\"nyc3\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := versions.LoadOverride(op)
	if err != nil {
		t.Fatal(err)
	}
	w := v.With(o)
	if w.Get("docker_apt_url") != "http://10.0.0.1:8767" || strings.Join(w.Regions(), ",") != "nyc3" || w.Get("consul_version") != "1.17.1" {
		t.Fatalf("merged: %v %v", w.Get("docker_apt_url"), w.Regions())
	}
	if v.Get("docker_apt_url") == "http://10.0.0.1:8767" {
		t.Fatal("With changed the original")
	}
	if got := strings.Join(o.Names(), ","); got != "docker_apt_url,snapshot_regions" {
		t.Fatalf("override names %s", got)
	}
	if err := os.WriteFile(op, []byte("docker_apt_url = \"ftp://x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := versions.LoadOverride(op); err == nil || !strings.Contains(err.Error(), op+":1: docker_apt_url") {
		t.Fatalf("bad override: %v", err)
	}
}
