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
}
