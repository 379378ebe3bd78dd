package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentStaysSmall keeps heavyweight dependencies out of the binary that
// every droplet runs: it must not pull in Consul's server code, cloud SDKs or
// Kubernetes through some convenient import.
func TestAgentStaysSmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/hashicorp/consul/agent",
		"github.com/aws/",
		"cloud.google.com/",
		"github.com/Azure/",
		"k8s.io/",
		"github.com/hashicorp/vault/sdk",
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("codelab-agent imports %s (forbidden prefix %s)", d, f)
			}
		}
	}
	if len(deps) > 900 {
		t.Errorf("codelab-agent depends on %d packages; keep it under 900", len(deps))
	}
	t.Logf("codelab-agent depends on %d packages", len(deps))
}
