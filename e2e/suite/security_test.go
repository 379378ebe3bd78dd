package suite

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/codelab-app/infra/e2e/internal/cluster"
)

// plainRPC, run on a droplet, opens a plain-text Consul RPC connection to
// $1:8300 (type byte 0, RPCConsul) and says whether the server cut it
// ("closed") or kept waiting for the request ("open": no TLS required).
const plainRPC = `exec 3<>"/dev/tcp/$1/8300" || { echo unreachable; exit 0; }
printf '\0' >&3
timeout 5 cat <&3 >/dev/null
rc=$?
if [ "$rc" = 124 ]; then echo open; else echo closed; fi`

// securitySubtests checks, on the running cluster, what Consul's TLS keeps
// out: a host on the VPC without the cluster's certificates gets no RPC.
func securitySubtests(t *testing.T, ctx context.Context, c *cluster.Cluster) {
	t.Run("a plain-text RPC client cannot talk to a Consul server", func(t *testing.T) {
		var from *cluster.Node
		for _, n := range c.Nodes {
			if n.Consul == "client" {
				from = n
				break
			}
		}
		if from == nil {
			t.Fatal("no client droplet")
		}
		for _, ip := range c.Servers() {
			out, err := c.Docker.Exec(ctx, from.ID, "bash", "-c", plainRPC, "plain-rpc", ip)
			if err != nil {
				t.Fatalf("from %s to %s: %v: %s", from.Name, ip, err, out)
			}
			if got := strings.TrimSpace(out); got != "closed" {
				t.Errorf("plain-text RPC from %s to server %s:8300: %s (want the server to cut it)", from.Name, ip, got)
			}
		}
	})
	t.Run("servers hold their RPC key 0600, clients only the CA certificate", func(t *testing.T) {
		for _, n := range c.Nodes {
			if n.Consul != "server" {
				continue
			}
			out, err := c.Docker.Exec(ctx, n.ID, "cat", "/etc/consul.d/tls/server.pem")
			if err != nil || !strings.Contains(out, "BEGIN CERTIFICATE") {
				t.Errorf("%s: /etc/consul.d/tls/server.pem: %v %.60s", n.Name, err, out)
			}
			mode, err := c.Docker.Exec(ctx, n.ID, "stat", "-c", "%a", "/etc/consul.d/tls/server-key.pem")
			if err != nil || strings.TrimSpace(mode) != "600" {
				t.Errorf("%s: server key mode %q (%v), want 600", n.Name, strings.TrimSpace(mode), err)
			}
		}
		for _, n := range c.Nodes {
			if n.Consul != "client" {
				continue
			}
			if out, err := c.Docker.Exec(ctx, n.ID, "ls", "/etc/consul.d/tls"); err != nil || strings.Contains(out, "key") {
				t.Errorf("%s holds %q in /etc/consul.d/tls (%v): a client gets the CA certificate only", n.Name, out, err)
			}
		}
		fmt.Fprintln(c.Opts.Out, "    Consul RPC: TLS with the cluster's CA on every server")
	})

	// ACLs, default deny. NEO4J_AUTH is set by the demo (the management
	// token reads it), so a denied read is the ACL, not a missing key.
	api, neo := roleNode(c, "api"), roleNode(c, "neo4j")
	auth := "codelab/" + c.Opts.Env + "/neo4j/NEO4J_AUTH"
	t.Run("the anonymous token cannot read the neo4j role's NEO4J_AUTH", func(t *testing.T) {
		if v, err := c.ConsulAdmin(ctx, neo, "kv", "get", auth); err != nil || v == "" {
			t.Fatalf("the management token cannot read %s: %v", auth, err)
		}
		for _, n := range []*cluster.Node{api, neo} {
			code, err := c.Docker.Exec(ctx, n.ID, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8500/v1/kv/"+auth)
			if err != nil || code != "403" {
				t.Errorf("GET /v1/kv/%s without a token on %s: HTTP %s %v, want 403", auth, n.Name, code, err)
			}
		}
	})
	t.Run("the api's token cannot read neo4j's keys or register a neo4j service", func(t *testing.T) {
		// The api droplet's own token, from its 0600 file.
		tf := "-token-file=/etc/codelab/consul-token"
		if out, err := c.Docker.Exec(ctx, api.ID, "consul", "kv", "get", tf, auth); err == nil {
			t.Errorf("api-1's token reads %s: %q", auth, out)
		}
		if out, err := c.Docker.Exec(ctx, api.ID, "consul", "kv", "get", tf, "-recurse", "codelab/"+c.Opts.Env+"/neo4j/"); err == nil && out != "" {
			t.Errorf("api-1's token lists neo4j's keys: %q", out)
		}
		if _, err := c.Docker.Exec(ctx, api.ID, "consul", "kv", "get", tf, "codelab/"+c.Opts.Env+"/api/NEO4J_USER"); err != nil {
			t.Errorf("api-1's token cannot read its own key: %v", err)
		}
		svc := `{"ID":"fake-neo4j","Name":"neo4j","Port":7687,"Tags":["` + c.Opts.Env + `"]}`
		code, err := c.Docker.Exec(ctx, api.ID, "sh", "-c",
			`printf '%s' "$1" | curl -s -o /dev/null -w '%{http_code}' -H @/dev/fd/3 -X PUT --data-binary @- http://127.0.0.1:8500/v1/agent/service/register 3<<EOF
X-Consul-Token: $(cat /etc/codelab/consul-token)
EOF`, "register", svc)
		if err != nil || code != "403" {
			t.Errorf("registering a neo4j service with api-1's token: HTTP %s %v, want 403", code, err)
			_, _ = c.ConsulAdmin(ctx, api, "services", "deregister", "-id", "fake-neo4j")
		}
	})
}

// roleNode is the cluster's first droplet of role.
func roleNode(c *cluster.Cluster, role string) *cluster.Node {
	for _, n := range c.Nodes {
		if n.Role == role {
			return n
		}
	}
	return nil
}

// consulAdmin runs a consul command on a droplet with the cluster's
// management token (standard input, never a command line).
func (f faults) consulAdmin(t *testing.T, n *cluster.Node, args ...string) string {
	t.Helper()
	out, err := f.c.ConsulAdmin(f.ctx, n, args...)
	if err != nil {
		t.Fatalf("%s: consul %s: %v", n.Name, strings.Join(args, " "), err)
	}
	return out
}
