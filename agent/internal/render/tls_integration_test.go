package render

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/internal/clustersec"
	"github.com/codelab-app/infra/tools/testenv"
)

// startRendered renders line for a node and starts a real Consul agent from
// exactly the rendered files.
func startRendered(t *testing.T, ctx context.Context, n *node, id int, line string) {
	t.Helper()
	m := metadata.Metadata{DropletID: fmt.Sprint(2000 + id), Hostname: n.name, Region: "nyc3", PrivateIPv4: "127.0.0.1"}
	files, err := Render(Input{Meta: m, User: mustParse(t, line), Ports: &n.ports, ContentRoot: n.root.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ctx, n.root, files, ConsulValidator{Bin: "consul"}); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	cmd := exec.Command("consul", "agent", "-config-dir", n.root.Path(ConsulDir))
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("--- consul log of %s\n%s", n.name, n.log.String())
		}
	})
}

func newNodes(t *testing.T, names ...string) []*node {
	ports := freePorts(t, 5*len(names))
	var out []*node
	for i, name := range names {
		p := ports[i*5 : i*5+5]
		out = append(out, &node{name: name, root: fsutil.Root{Dir: t.TempDir()}, log: &bytes.Buffer{},
			ports: Ports{HTTP: p[0], SerfLAN: p[1], SerfWAN: p[2], Server: p[3], DNS: p[4], GRPC: -1, GRPCTLS: -1}})
	}
	return out
}

// TestServerOfAnotherCAIsNamed starts two servers that share the gossip key
// but were given different CAs. They see each other in gossip, yet no
// leader is elected: RPC between them fails TLS. The probe the boot runs
// while it waits for a leader names the other server and says why.
func TestServerOfAnotherCAIsNamed(t *testing.T) {
	testenv.Integration(t, "consul")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := newNodes(t, "neo4j-1", "neo4j-2")
	join := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", nodes[0].ports.SerfLAN, nodes[1].ports.SerfLAN)
	cas := []string{testenv.ServerTLS, "ca=" + testenv.OtherCA + " ca_key=" + testenv.OtherCAKey}
	for i, n := range nodes {
		startRendered(t, ctx, n, i, fmt.Sprintf("#codelab v1 role=neo4j consul=server bootstrap=2 join=%s gossip=%s %s", join, testGossip, cas[i]))
	}
	ours, err := clustersec.Parse(testenv.TestCA, "")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ours.Cert)
	// No leader, so no server resolves a token: the boot asks its own
	// agent with the agent recovery token.
	rec, err := mustParse(t, "#codelab v1 role=neo4j consul=server join=127.0.0.1 gossip="+testGossip+" "+testenv.ServerTLS).AgentRecoveryToken()
	if err != nil {
		t.Fatal(err)
	}
	c := consul.New(net.JoinHostPort("127.0.0.1", strconv.Itoa(nodes[0].ports.HTTP))).WithToken(rec.Reveal())
	var fe *consul.ForeignCAError
	err = retry.Do(ctx, retry.Policy{Initial: 200 * time.Millisecond, Max: time.Second}, func(ctx context.Context) error {
		err := c.ProbeServersCA(ctx, "nyc3", roots)
		if errors.As(err, &fe) {
			return nil
		}
		return fmt.Errorf("no foreign server found yet: %v", err)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fe.Error(), "neo4j-2") || !strings.Contains(fe.Error(), "not signed by this droplet's CA") {
		t.Errorf("error = %v", fe)
	}
	if h := c.Check(ctx); h.Leader != "" {
		t.Errorf("servers of two CAs elected a leader %s", h.Leader)
	}
}
