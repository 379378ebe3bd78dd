// Package consul is the agent's one Consul client, over
// github.com/hashicorp/consul/api: the local agent's health (self, leader,
// members) for boot and status, and KV index watches for the monitor.
package consul

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/hashicorp/consul/api"
)

// DefaultAddr is the local agent's HTTP API.
const DefaultAddr = "127.0.0.1:8500"

// memberAlive is serf's alive status in api.AgentMember.Status.
const memberAlive = 1

// callTimeout bounds one non-blocking request (self, leader, members).
const callTimeout = 5 * time.Second

// sharedHTTP pools connections across Clients; blocking queries are bounded
// by their wait time and context, not by a client timeout.
var sharedHTTP = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

// TokenFile is the droplet's Consul ACL token (its role's), 0600, written
// by render. Clients send it when it exists; it never travels on a command
// line.
const TokenFile = "/etc/codelab/consul-token"

// Client talks to one Consul agent's HTTP API. The zero value talks to
// DefaultAddr with the token in TokenFile, if there is one.
type Client struct {
	addr  string
	http  *http.Client
	token string // set: sent instead of TokenFile's
}

// WithToken returns a client that sends token (a server's management token
// for the ACL bootstrap, say) instead of TokenFile's.
func (c Client) WithToken(token string) Client {
	c.token = token
	return c
}

// Token is the token a client sends: its own, else TokenFile's, else ""
// (Consul's anonymous token).
func (c Client) Token() string {
	if c.token != "" {
		return c.token
	}
	return fileToken()
}

func fileToken() string {
	b, err := os.ReadFile(TokenFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// New returns a client for addr: host:port or a URL (http://host:port,
// https://host:port, unix:///path); "" means DefaultAddr.
func New(addr string) Client { return Client{addr: addr} }

// Addr is the address the client talks to.
func (c Client) Addr() string {
	if c.addr == "" {
		return DefaultAddr
	}
	return c.addr
}

// api returns a consul/api client whose every request carries ctx: some
// endpoints (agent self, members) take no QueryOptions, so the context
// travels in the transport.
func (c Client) api(ctx context.Context) (*api.Client, error) {
	base := c.http
	if base == nil {
		base = sharedHTTP
	}
	next := base.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc := *base
	hc.Transport = ctxTransport{ctx: ctx, next: next}
	cl, err := api.NewClient(&api.Config{Address: c.Addr(), HttpClient: &hc, Token: c.Token()})
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", c.Addr(), err)
	}
	return cl, nil
}

// NewAPI is a consul/api client for addr (default DefaultAddr), for the
// callers that need more of the API than Client wraps (the fleet view's
// sessions and KV records). timeout bounds every request; 0 leaves them to
// their contexts (blocking queries).
func NewAPI(addr string, timeout time.Duration) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = New(addr).Addr()
	hc := &http.Client{Timeout: timeout, Transport: cleanhttp.DefaultPooledTransport()}
	if cfg.Token == "" && cfg.TokenFile == "" {
		// A long-lived client (the fleet publisher starts before the first
		// render writes TokenFile) reads the token at every request.
		hc.Transport = fileTokenTransport{next: hc.Transport}
	}
	cfg.HttpClient = hc
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cfg.Address, err)
	}
	return c, nil
}

// fileTokenTransport sends TokenFile's token with every request that
// carries none.
type fileTokenTransport struct{ next http.RoundTripper }

func (t fileTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Consul-Token") == "" {
		if tok := fileToken(); tok != "" {
			r = r.Clone(r.Context())
			r.Header.Set("X-Consul-Token", tok)
		}
	}
	return t.next.RoundTrip(r)
}

// ctxTransport gives requests without a cancellable context its own.
type ctxTransport struct {
	ctx  context.Context
	next http.RoundTripper
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Context().Done() == nil {
		r = r.WithContext(t.ctx)
	}
	return t.next.RoundTrip(r)
}

// Self is the part of the agent's /agent/self we read.
type Self struct {
	Node            string
	Datacenter      string
	Server          bool
	BootstrapExpect int
}

// Self reads the agent's own configuration.
func (c Client) Self(ctx context.Context) (Self, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cl, err := c.api(ctx)
	if err != nil {
		return Self{}, err
	}
	raw, err := cl.Agent().Self()
	if err != nil {
		return Self{}, err
	}
	s := Self{}
	s.Node, _ = raw["Config"]["NodeName"].(string)
	s.Datacenter, _ = raw["Config"]["Datacenter"].(string)
	s.Server, _ = raw["Config"]["Server"].(bool)
	if n, ok := raw["DebugConfig"]["BootstrapExpect"].(float64); ok {
		s.BootstrapExpect = int(n)
	}
	return s, nil
}

// Leader returns the Raft leader's address, "" when there is none.
func (c Client) Leader(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cl, err := c.api(ctx)
	if err != nil {
		return "", err
	}
	return cl.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
}

// Members returns the LAN gossip pool as the agent sees it.
func (c Client) Members(ctx context.Context) ([]*api.AgentMember, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cl, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	return cl.Agent().Members(false)
}

// MemberAddr is a member's gossip address, host:port.
func MemberAddr(m *api.AgentMember) string {
	return net.JoinHostPort(m.Addr, strconv.Itoa(int(m.Port)))
}

// KVIndex returns the modify index of the KV folder prefix (every key under
// it). With index > 0 and wait > 0 it is a blocking query: it answers when
// the folder's index moves past index, or after wait, or when ctx ends.
func (c Client) KVIndex(ctx context.Context, prefix string, index uint64, wait time.Duration) (uint64, error) {
	cl, err := c.api(ctx)
	if err != nil {
		return 0, err
	}
	q := &api.QueryOptions{}
	if index > 0 && wait > 0 {
		q.WaitIndex, q.WaitTime = index, wait
	}
	prefix = strings.Trim(prefix, "/")
	_, meta, err := cl.KV().Keys(prefix, "", q.WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("consul KV %s: %w", prefix, err)
	}
	return meta.LastIndex, nil
}

// KVKeys lists the KV keys below prefix (full key paths).
func (c Client) KVKeys(ctx context.Context, prefix string) ([]string, error) {
	cl, err := c.api(ctx)
	if err != nil {
		return nil, err
	}
	keys, _, err := cl.KV().Keys(prefix, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul KV %s: %w", prefix, err)
	}
	return keys, nil
}

// Health is a snapshot of the local agent's view.
type Health struct {
	Reachable     bool     `json:"reachable"`
	Error         string   `json:"error,omitempty"`
	Node          string   `json:"node,omitempty"`
	Server        bool     `json:"server"`
	Member        bool     `json:"member"` // this node is alive in the pool
	Leader        string   `json:"leader,omitempty"`
	Members       int      `json:"members"` // alive members
	Servers       []string `json:"servers,omitempty"`
	BootstrapWant int      `json:"bootstrapExpect,omitempty"`
}

// Check reads the agent, its leader and members.
func (c Client) Check(ctx context.Context) Health {
	var h Health
	self, err := c.Self(ctx)
	if err != nil {
		h.Error = fmt.Sprintf("consul agent at %s not answering: %v", c.Addr(), err)
		return h
	}
	h.Reachable = true
	h.Node = self.Node
	h.Server = self.Server
	h.BootstrapWant = self.BootstrapExpect
	if l, err := c.Leader(ctx); err == nil {
		h.Leader = l
	} else {
		h.Error = fmt.Sprintf("consul leader: %v", err)
	}
	ms, err := c.Members(ctx)
	if err != nil {
		if h.Error == "" {
			h.Error = fmt.Sprintf("consul members: %v", err)
		}
		return h
	}
	for _, m := range ms {
		if m.Status != memberAlive {
			continue
		}
		h.Members++
		if m.Name == h.Node {
			h.Member = true
		}
		if m.IsConsulServer() {
			h.Servers = append(h.Servers, MemberAddr(m))
		}
	}
	return h
}

// Missing says, in an operator's words, what keeps Consul from being ready
// (an agent that answers and a leader), or "" when it is ready.
func (h Health) Missing(join string) string {
	switch {
	case !h.Reachable:
		return h.Error + " (is consul.service running?)"
	case h.Leader != "":
		return ""
	case h.Server && h.BootstrapWant > 0 && len(h.Servers) < h.BootstrapWant:
		return fmt.Sprintf("no leader: bootstrap not yet met: %d servers expected (bootstrap=), %d known", h.BootstrapWant, len(h.Servers))
	case h.Members <= 1:
		return fmt.Sprintf("no leader: no other Consul members reachable (join=%s); check the addresses, that port 8301 is open on the VPC, and that gossip= matches the cluster's key (a wrong key shows as 'No installed keys could decrypt the message' in the consul log)", join)
	case len(h.Servers) == 0:
		return fmt.Sprintf("no leader: %d members but no servers reachable", h.Members)
	default:
		return fmt.Sprintf("no leader yet: %d members, servers %v (election in progress?)", h.Members, h.Servers)
	}
}
