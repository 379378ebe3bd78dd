package boot_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/consul/consultest"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/tools/testenv"
)

// TestConsulReadyAgainstRealConsul: a lone server expecting three never
// gets a leader, and consul-ready says so; a dev agent elects itself.
func TestConsulReadyAgainstRealConsul(t *testing.T) {
	testenv.Integration(t, "consul")
	facts := &boot.Facts{User: userdata.Config{Join: userdata.Join{Addrs: []string{"10.0.0.2"}}}}
	fast := retry.Policy{Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond}

	lonely := consultest.Start(t, "-server", "-bootstrap-expect", "3", "-node", "lonely")
	err := (&boot.ConsulReady{Facts: facts, Consul: lonely, Timeout: 4 * time.Second, Poll: fast}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bootstrap not yet met: 3 servers expected") {
		t.Fatalf("lone server: err = %v", err)
	}
	if boot.HintOf(err) != "journalctl -u consul -n 50" {
		t.Errorf("hint = %q", boot.HintOf(err))
	}

	down := consul.New(net.JoinHostPort("127.0.0.1", "1"))
	err = (&boot.ConsulReady{Facts: facts, Consul: down, Timeout: time.Second, Poll: fast}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not answering") {
		t.Fatalf("no agent: err = %v", err)
	}

	dev := consultest.Start(t, "-dev", "-node", "dev")
	if err := (&boot.ConsulReady{Facts: facts, Consul: dev, Timeout: 30 * time.Second, Poll: fast}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := dev.Check(context.Background())
	if !h.Member || h.Leader == "" || h.Members != 1 || len(h.Servers) != 1 || !h.Server {
		t.Fatalf("dev agent health = %+v", h)
	}
}
