package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/internal/exitcode"
)

// The README documents what the code does; these tests fail when the two
// drift apart.

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadmeExitCodesMatchTheCode(t *testing.T) {
	doc := readme(t)
	for _, line := range strings.Split(exitcode.Doc, "\n")[1:] {
		f := strings.Fields(line)
		code, meaning := f[0], strings.Join(f[1:], " ")
		row := "| " + code + " | " + meaning + " |"
		if !strings.Contains(doc, row) {
			t.Errorf("README lacks the exit code row %q", row)
		}
	}
}

func TestReadmeDocumentsEveryUserdataKey(t *testing.T) {
	doc := readme(t)
	rows := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(doc, -1)
	var documented []string
	for _, r := range rows {
		documented = append(documented, r[1])
	}
	keys := userdata.KeyNames()
	if strings.Join(documented, ",") != strings.Join(keys, ",") {
		t.Errorf("README user_data keys %v, code has %v", documented, keys)
	}
}

func TestReadmeSetupCommandsExist(t *testing.T) {
	doc := readme(t)
	mk, err := os.ReadFile("../../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"demo", "test", "deps"} {
		if !strings.Contains(doc, "make "+target) {
			t.Errorf("README does not mention make %s", target)
		}
		if !regexp.MustCompile("(?m)^" + target + ":").Match(mk) {
			t.Errorf("Makefile has no %s target", target)
		}
	}
}
