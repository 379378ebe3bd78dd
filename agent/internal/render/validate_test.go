package render

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/tools/testenv"
)

// composeCases are a render of every role.
var composeCases = append(goldenCases[:len(goldenCases):len(goldenCases)],
	struct{ name, host, ip, line string }{"landing-client", "landing-1", "10.132.0.7",
		"#codelab v1 role=landing join=10.132.0.2 gossip=" + testGossip + " " + testenv.ClientTLS},
	struct{ name, host, ip, line string }{"sites-client", "sites-1", "10.132.0.8",
		"#codelab v1 role=sites join=10.132.0.2 gossip=" + testGossip + " " + testenv.ClientTLS},
)

func TestComposeValidatorAcceptsEveryRole(t *testing.T) {
	for _, tc := range composeCases {
		files, err := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line)})
		if err != nil {
			t.Fatal(err)
		}
		// The env files compose.yaml names do not exist yet: consul-template
		// writes them after render.
		if _, err := Apply(context.Background(), fsutil.Root{Dir: t.TempDir()}, files, ComposeValidator{}); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// badCompose replaces the rendered compose file with a broken one.
func badCompose(t *testing.T, data string) []File {
	t.Helper()
	files, err := Render(Input{Meta: sampleMeta(t, "neo4j-1", "10.132.0.2"), User: mustParse(t, goldenCases[0].line)})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if f.Consumer == ConsumerCompose {
			files[i].Data = []byte(data)
			return files
		}
	}
	t.Fatal("render made no compose file")
	return nil
}

func TestComposeValidatorRejectsABadComposeFile(t *testing.T) {
	for _, tc := range []struct {
		name, data, says string
	}{
		{"unknown key", "services:\n  neo4j:\n    imagee: neo4j:5\n", "imagee"},
		{"undefined volume", "services:\n  neo4j:\n    image: neo4j:5\n    volumes: [\"data:/data\"]\n", "undefined volume data"},
		{"bad port", "services:\n  neo4j:\n    image: neo4j:5\n    ports: [\"10.0.0.1:http:7474\"]\n", "port"},
		{"not yaml", "services: [neo4j\n", "yaml"},
		{"empty", "\n", "empty compose file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fsutil.Root{Dir: t.TempDir()}
			_, err := Apply(context.Background(), root, badCompose(t, tc.data), ComposeValidator{})
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Validator != "compose" {
				t.Fatalf("err = %v, want a ValidationError from compose", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "/root/docker/neo4j/compose.yaml: ") || !strings.Contains(strings.ToLower(msg), tc.says) {
				t.Errorf("error %q does not name the file and %q", msg, tc.says)
			}
			if strings.Contains(msg, "codelab-render-") {
				t.Errorf("error %q shows the staging folder", msg)
			}
			if _, err := root.ReadFile(ComposeFile("neo4j")); err == nil {
				t.Error("a rejected compose file was written")
			}
		})
	}
}

// TestStartIntervalFollowsTheEngine: every role's Compose file sets the
// healthcheck's start_interval only for an Engine that runs it (API 1.44,
// Docker Engine 25, and later: Compose refuses it on older ones), and
// Compose's loader accepts both forms.
func TestStartIntervalFollowsTheEngine(t *testing.T) {
	for _, tc := range composeCases {
		for api, want := range map[string]bool{"": false, "1.41": false, "1.43": false, "1.44": true, "1.47": true} {
			files, err := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line), EngineAPIVersion: api})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if f.Consumer != ConsumerCompose {
					continue
				}
				if got := strings.Contains(string(f.Data), "start_interval:"); got != want {
					t.Errorf("%s, Engine API %q: start_interval rendered %v, want %v\n%s", tc.name, api, got, want, f.Data)
				}
			}
			if _, err := Apply(context.Background(), fsutil.Root{Dir: t.TempDir()}, files, ComposeValidator{}); err != nil {
				t.Errorf("%s, Engine API %q: %v", tc.name, api, err)
			}
		}
	}
}
