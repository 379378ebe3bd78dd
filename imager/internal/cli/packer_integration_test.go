package cli_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/imager/internal/cli"
	"github.com/codelab-app/infra/tools/testenv"
)

// The committed templates validate and are formatted, with the installed Packer.
func TestValidateAndFmtCheckCommittedTemplates(t *testing.T) {
	testenv.Integration(t, "packer")
	bin := "packer"
	g, out, errb := globals(t, env{})
	g.Repo, g.Packer = repoRoot(t), bin
	if err := run(t, g, "validate", "all"); err != nil {
		t.Fatalf("validate all: %v\n%s\n%s", err, out, errb)
	}
	for _, want := range []string{"services-base: valid", "neo4j-base: valid", "api-base: valid", "web-base: valid", "landing-base: valid", "sites-base: valid"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("validate output lacks %q: %s", want, out)
		}
	}
	out.Reset()
	if err := run(t, g, "fmt", "--check"); err != nil {
		t.Fatalf("fmt --check: %v\n%s\n%s", err, out, errb)
	}
	if !strings.Contains(out.String(), "formatted: 6 folder(s) checked") {
		t.Errorf("fmt --check output: %s", out)
	}
}

func TestFmtCheckListsUnformattedFilesAndFmtFixesThem(t *testing.T) {
	testenv.Integration(t, "packer")
	bin := "packer"
	repo := fixtureRepo(t)
	bad := filepath.Join(repo, "packer", "neo4j-base", "neo4j-base.pkr.hcl")
	b, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(string(b), "    name          = \"neo4j-base\"", "    name = \"neo4j-base\"", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	vf := filepath.Join(repo, "packer", "versions.pkrvars.hcl")
	b, err = os.ReadFile(vf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vf, []byte(strings.Replace(string(b), `consul_version = "1.17.1"`, `consul_version="1.17.1"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	g, out, _ := globals(t, env{})
	g.Repo, g.Packer = repo, bin
	err = run(t, g, "fmt", "--check")
	var fe *cli.FmtError
	if !errors.As(err, &fe) || len(fe.Files) != 2 {
		t.Fatalf("fmt --check = %v, want a FmtError with 2 files", err)
	}
	for _, want := range []string{"needs formatting:", "  packer/versions.pkrvars.hcl\n", "  packer/neo4j-base/neo4j-base.pkr.hcl\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out.Reset()
	if err := run(t, g, "fmt"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "formatted packer/neo4j-base/neo4j-base.pkr.hcl") {
		t.Errorf("fmt output: %s", out)
	}
	if err := run(t, g, "fmt", "--check"); err != nil {
		t.Fatalf("fmt --check after fmt: %v", err)
	}
}

func TestValidateFailsOnABrokenTemplate(t *testing.T) {
	testenv.Integration(t, "packer")
	bin := "packer"
	repo := fixtureRepo(t)
	tpl := filepath.Join(repo, "packer", "services-base", "services-base.pkr.hcl")
	b, err := os.ReadFile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(b), `name          = "services-base"`, `name          = "services-base"
    no_such_option = true`, 1)
	if err := os.WriteFile(tpl, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	g, out, errb := globals(t, env{})
	g.Repo, g.Packer = repo, bin
	err = run(t, g, "validate", "all")
	if err == nil || !strings.Contains(err.Error(), "1 of 6 templates invalid: [services-base]") {
		t.Fatalf("validate = %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "neo4j-base: valid") || !strings.Contains(errb.String(), "no_such_option") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errb)
	}
}
