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
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/roles"
	"github.com/codelab-app/infra/tools/testenv"
)

func TestGoldenConfigsPassConsulValidate(t *testing.T) {
	testenv.Integration(t, "consul")
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			files, err := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line)})
			if err != nil {
				t.Fatal(err)
			}
			root := fsutil.Root{Dir: t.TempDir()}
			if _, err := Apply(context.Background(), root, files, ConsulValidator{Bin: "consul"}, TemplateValidator{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRealConsulRejectsBadConfigAndNothingIsSwapped(t *testing.T) {
	testenv.Integration(t, "consul")
	root := fsutil.Root{Dir: t.TempDir()}
	tc := goldenCases[2]
	files, _ := Render(Input{Meta: sampleMeta(t, tc.host, tc.ip), User: mustParse(t, tc.line)})
	if _, err := Apply(context.Background(), root, files, ConsulValidator{Bin: "consul"}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root.Dir)
	// A client with bootstrap_expect is something only Consul itself knows
	// to be wrong.
	bad := append([]File(nil), files...)
	for i := range bad {
		if bad[i].Path == ConsulDir+"/consul.hcl" {
			bad[i].Data = append(append([]byte{}, bad[i].Data...), []byte("bootstrap_expect = 3\n")...)
		}
	}
	_, err := Apply(context.Background(), root, bad, ConsulValidator{Bin: "consul"})
	if err == nil || !strings.Contains(err.Error(), "bootstrap_expect") || !strings.Contains(err.Error(), "/etc/consul.d/consul.hcl") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), os.TempDir()+"/codelab-render-") {
		t.Errorf("error shows the staging folder instead of droplet paths: %v", err)
	}
	if fmt.Sprint(before) != fmt.Sprint(snapshot(t, root.Dir)) {
		t.Fatal("rejected config was swapped in")
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

type node struct {
	name  string
	root  fsutil.Root
	ports Ports
	log   *bytes.Buffer
}

// TestClusterFromRenderedConfigs renders configs for three servers and one
// client, starts real Consul agents from exactly those files, and checks
// that they form a cluster; then the real consul-template renders the
// client's role template from a KV value.
func TestClusterFromRenderedConfigs(t *testing.T) {
	testenv.Integration(t, "consul", "consul-template")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	names := []string{"neo4j-1", "api-2", "api-3", "api-1"}
	ports := freePorts(t, 5*len(names))
	var nodes []*node
	var join []string
	for i, name := range names {
		p := ports[i*5 : i*5+5]
		n := &node{name: name, root: fsutil.Root{Dir: t.TempDir()}, log: &bytes.Buffer{},
			ports: Ports{HTTP: p[0], SerfLAN: p[1], SerfWAN: p[2], Server: p[3], DNS: p[4], GRPC: -1, GRPCTLS: -1}}
		nodes = append(nodes, n)
		if i < 3 {
			join = append(join, fmt.Sprintf("127.0.0.1:%d", n.ports.SerfLAN))
		}
	}
	for i, n := range nodes {
		role, mode := "neo4j", "consul=server bootstrap=3 "+testenv.ServerTLS
		if i > 0 {
			role = "api"
		}
		if i == 3 {
			mode = "consul=client " + testenv.ClientTLS
			// auto_encrypt asks the join addresses for a certificate on
			// the client's own server port, before gossip could tell it
			// the servers' ports.
			n.ports.Server = nodes[0].ports.Server
		}
		line := fmt.Sprintf("#codelab v1 role=%s env=prod %s join=%s gossip=%s", role, mode, strings.Join(join, ","), testGossip)
		m := metadata.Metadata{DropletID: fmt.Sprint(1000 + i), Hostname: n.name, Region: "nyc3", PrivateIPv4: "127.0.0.1"}
		files, err := Render(Input{Meta: m, User: mustParse(t, line), Ports: &n.ports, ContentRoot: n.root.Dir})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(ctx, n.root, files, ConsulValidator{Bin: "consul"}, TemplateValidator{}); err != nil {
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

	client := nodes[3]
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(client.ports.HTTP))
	poll := retry.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second}

	// ACLs: once there is a leader, a server's agent makes the policies
	// and role tokens with the management token (the boot's consul-acl
	// step); a second run changes nothing.
	server := consul.New(net.JoinHostPort("127.0.0.1", strconv.Itoa(nodes[0].ports.HTTP))).WithToken(testenv.TestManagementToken)
	toks, err := RoleTokens(mustParse(t, "#codelab v1 role=neo4j consul=server join=127.0.0.1 gossip="+testGossip+" "+testenv.ServerTLS))
	if err != nil {
		t.Fatal(err)
	}
	if err := retry.Do(ctx, poll, func(ctx context.Context) error { return server.BootstrapACL(ctx, "prod", toks) }); err != nil {
		t.Fatalf("ACL bootstrap: %v", err)
	}
	mgmtAPI, err := api.NewClient(&api.Config{Address: server.Addr(), Token: testenv.TestManagementToken})
	if err != nil {
		t.Fatal(err)
	}
	aclState := func() string {
		t.Helper()
		toks, _, err := mgmtAPI.ACL().TokenList(nil)
		if err != nil {
			t.Fatal(err)
		}
		pols, _, err := mgmtAPI.ACL().PolicyList(nil)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, x := range toks {
			fmt.Fprintf(&b, "token %s %d\n", x.AccessorID, x.ModifyIndex)
		}
		for _, x := range pols {
			fmt.Fprintf(&b, "policy %s %d\n", x.Name, x.ModifyIndex)
		}
		return b.String()
	}
	before := aclState()
	if err := server.BootstrapACL(ctx, "prod", toks); err != nil {
		t.Fatalf("second ACL bootstrap: %v", err)
	}
	if after := aclState(); after != before {
		t.Errorf("a second bootstrap changed the ACLs:\n%s\n%s", before, after)
	}

	err = retry.Do(ctx, poll, func(ctx context.Context) error {
		h := consul.New(addr).WithToken(testenv.TestAPIToken).Check(ctx)
		if m := h.Missing(""); m != "" {
			return errors.New(m)
		}
		if h.Members != 4 || len(h.Servers) != 3 {
			return fmt.Errorf("%d alive members, %d servers; want 4 and 3", h.Members, len(h.Servers))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cluster did not form: %v", err)
	}
	// The client reached the servers over TLS (auto_encrypt gave it its
	// certificate: the servers take no RPC without one), and a plain-text
	// RPC connection to a server is cut at once.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, nodes[0].root.Path(ConsulCAFile)))
	if err := consul.New(net.JoinHostPort("127.0.0.1", strconv.Itoa(nodes[0].ports.HTTP))).ProbeServersCA(ctx, "nyc3", roots); err != nil {
		t.Errorf("servers of one CA: probe: %v", err)
	}
	for _, srv := range nodes[:3] {
		if err := plainRPCRefused(net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.ports.Server))); err != nil {
			t.Errorf("%s: %v", srv.name, err)
		}
	}

	// KV to consul-template: the real binary, the rendered config and
	// template. -dry prints instead of writing and runs no command.
	kv, err := api.NewClient(&api.Config{Address: addr, Token: testenv.TestManagementToken})
	if err != nil {
		t.Fatal(err)
	}
	putKV := func(key, value string) {
		t.Helper()
		if _, err := kv.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			t.Fatalf("write KV %s: %v", key, err)
		}
	}
	// The api template waits for its required keys; give it them.
	required, err := roles.Required("api")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range required {
		putKV(roles.RequiredKVPath("prod", "api", k), "set-by-test")
	}
	putKV("codelab/prod/api/GREETING", "hello from kv")
	putKV("codelab/prod/neo4j/NEO4J_AUTH", "neo4j/secret")
	checkACL(t, ctx, addr)
	// Right after an election a read may still miss the write; in
	// production consul-template keeps watching, here we ask again until
	// the value arrives or the deadline passes.
	tctx, tcancel := context.WithTimeout(ctx, time.Minute)
	defer tcancel()
	dest := filepath.Join(client.root.Dir, "/root/docker/api/api.env")
	var out []byte
	err = retry.Do(tctx, poll, func(ctx context.Context) error {
		var err error
		out, err = exec.CommandContext(ctx, "consul-template", "-config", client.root.Path(TemplateConfig), "-once", "-dry").CombinedOutput()
		if err != nil {
			return fmt.Errorf("consul-template: %w\n%s", err, out)
		}
		if !strings.Contains(string(out), `GREETING="hello from kv"`) {
			return fmt.Errorf("KV value not rendered yet:\n%s", out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"> " + dest, `GREETING="hello from kv"`, "CODELAB_ROLE=api", "CODELAB_ENV=prod"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("consul-template output lacks %q:\n%s", want, out)
		}
	}
}

// plainRPCRefused opens a plain-text Consul RPC connection (type byte 0,
// RPCConsul) and expects the server to close it without an answer. A server
// without verify_incoming would wait for the request instead, and the read
// would time out.
func plainRPCRefused(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial the RPC port: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{0}); err != nil {
		return nil // already closed
	}
	n, err := conn.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("a plain-text RPC connection stayed open: the server accepts RPC without TLS")
	case err == nil || n > 0:
		return fmt.Errorf("the server answered %d bytes to plain-text RPC", n)
	}
	return nil
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkACL: through the client agent, the anonymous token reads no KV, the
// api's token reads its own keys and neither neo4j's keys nor may it
// register a neo4j service; the management token reads everything (so the
// denials are not a missing key).
func checkACL(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	as := func(token string) *api.Client {
		c, err := api.NewClient(&api.Config{Address: addr, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	read := func(c *api.Client, key string) (string, error) {
		p, _, err := c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil || p == nil {
			return "", err
		}
		return string(p.Value), nil
	}
	const auth = "codelab/prod/neo4j/NEO4J_AUTH"
	if v, err := read(as(testenv.TestManagementToken), auth); err != nil || v != "neo4j/secret" {
		t.Fatalf("management token reads %s: %q %v", auth, v, err)
	}
	if v, err := read(as(""), auth); v != "" {
		t.Errorf("the anonymous token reads %s (%v)", auth, err)
	}
	apiTok := as(testenv.TestAPIToken)
	if v, err := read(apiTok, auth); v != "" {
		t.Errorf("the api token reads %s (%v)", auth, err)
	}
	if keys, _, err := apiTok.KV().Keys("codelab/prod/neo4j/", "", nil); len(keys) != 0 {
		t.Errorf("the api token lists the neo4j keys: %v %v", keys, err)
	}
	if v, err := read(apiTok, "codelab/prod/api/GREETING"); err != nil || v != "hello from kv" {
		t.Errorf("the api token cannot read its own key: %q %v", v, err)
	}
	err := apiTok.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "fake-neo4j", Name: "neo4j", Port: 7687, Address: "127.0.0.1"})
	if err == nil {
		_ = apiTok.Agent().ServiceDeregister("fake-neo4j")
		t.Error("the api token registered a neo4j service")
	}
	// The control: it may register its own service.
	if err := apiTok.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "api-acl-probe", Name: "api", Port: 3999}); err != nil {
		t.Errorf("the api token cannot register an api service: %v", err)
	} else {
		_ = apiTok.Agent().ServiceDeregister("api-acl-probe")
	}
}
