package boot_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/agent/internal/userdata"
)

// A client's Consul agent answers only once a server has issued its TLS
// certificate: while no server is reachable, consul-ready says it waits
// for the servers, not for a broken local agent.
func TestConsulReadyClientWithoutServersWaitsForServers(t *testing.T) {
	facts := &boot.Facts{User: userdata.Config{Consul: userdata.ConsulClient, Join: userdata.Join{Addrs: []string{"127.0.0.1"}}}}
	fast := retry.Policy{Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond}
	down := consul.New(net.JoinHostPort("127.0.0.1", "1"))
	for _, tc := range []struct {
		servers bool
		want    string
	}{
		{false, "no Consul server answers on its RPC port (join=127.0.0.1)"},
		{true, "not answering"},
	} {
		s := &boot.ConsulReady{Facts: facts, Consul: down, Timeout: 500 * time.Millisecond, Poll: fast,
			ServerReachable: func(context.Context) bool { return tc.servers }}
		err := s.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("servers reachable %v: err = %v, want %q", tc.servers, err, tc.want)
		}
	}
}
