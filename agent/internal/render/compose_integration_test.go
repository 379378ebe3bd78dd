package render

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codelab-app/infra/tools/testenv"
)

// TestComposeValidatorAgreesWithDockerCompose: every role's rendered
// compose.yaml, and each bad one, gets the same verdict from
// ComposeValidator as from the real `docker compose config -q` (given the
// env files, which the plugin reads and the validator does not).
func TestComposeValidatorAgreesWithDockerCompose(t *testing.T) {
	testenv.Integration(t, "docker")
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Fatalf("integration prerequisite missing: the docker compose plugin: %v: %s (run make deps)", err, out)
	}
	type doc struct {
		name string
		data []byte
	}
	var docs []doc
	for _, tc := range composeCases {
		for _, api := range []string{"", StartIntervalAPI} {
			files, err := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line), EngineAPIVersion: api})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if f.Consumer == ConsumerCompose {
					docs = append(docs, doc{tc.name + " engine API " + api, f.Data})
				}
			}
		}
	}
	for _, bad := range []string{
		"services:\n  neo4j:\n    imagee: neo4j:5\n",
		"services:\n  neo4j:\n    image: neo4j:5\n    volumes: [\"data:/data\"]\n",
		"services:\n  neo4j:\n    image: neo4j:5\n    ports: [\"10.0.0.1:http:7474\"]\n",
		"services: [neo4j\n",
	} {
		docs = append(docs, doc{"bad: " + strings.ReplaceAll(bad, "\n", " "), []byte(bad)})
	}
	for _, d := range docs {
		dir := filepath.Join(t.TempDir(), "neo4j")
		file := filepath.Join(dir, "compose.yaml")
		// The plugin reads the env files: give it empty ones under dir.
		data := strings.ReplaceAll(string(d.data), "/root/docker/", dir+"/root/docker/")
		for _, line := range strings.Split(data, "\n") {
			if p := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- ")); strings.HasPrefix(p, dir) && strings.HasSuffix(p, ".env") {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		out, cliErr := exec.Command("docker", "compose", "-p", "neo4j", "-f", file, "config", "-q").CombinedOutput()
		libErr := loadCompose(context.Background(), file, d.data)
		if (cliErr == nil) != (libErr == nil) {
			t.Errorf("%s: docker compose config says %v (%s), ComposeValidator says %v", d.name, cliErr, strings.TrimSpace(string(out)), libErr)
		}
	}
}
