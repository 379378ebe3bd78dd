package boot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// DefaultConsulAddr is the local agent's HTTP API.
const DefaultConsulAddr = "127.0.0.1:8500"

// Consul is a small client for the local agent's HTTP API: only what boot
// and status need.
type Consul struct {
	Addr string // host:port; default DefaultConsulAddr
	HTTP *http.Client
}

// ConsulMember is one gossip pool member.
type ConsulMember struct {
	Name   string
	Addr   string
	Status int // 1 alive, 2 leaving, 3 left, 4 failed
	Tags   map[string]string
}

// Server reports whether the member is a Consul server.
func (m ConsulMember) Server() bool { return m.Tags["role"] == "consul" }

// ConsulSelf is the part of /v1/agent/self we read.
type ConsulSelf struct {
	Config struct {
		NodeName   string
		Datacenter string
		Server     bool
	}
	DebugConfig struct {
		BootstrapExpect int
	}
}

func (c Consul) get(ctx context.Context, path string, into any) error {
	addr := c.Addr
	if addr == "" {
		addr = DefaultConsulAddr
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// Self reads /v1/agent/self.
func (c Consul) Self(ctx context.Context) (ConsulSelf, error) {
	var s ConsulSelf
	err := c.get(ctx, "/v1/agent/self", &s)
	return s, err
}

// Leader reads /v1/status/leader: "" when there is none.
func (c Consul) Leader(ctx context.Context) (string, error) {
	var l string
	err := c.get(ctx, "/v1/status/leader", &l)
	return l, err
}

// Members reads the LAN members.
func (c Consul) Members(ctx context.Context) ([]ConsulMember, error) {
	var raw []struct {
		Name   string
		Addr   string
		Port   int
		Status int
		Tags   map[string]string
	}
	if err := c.get(ctx, "/v1/agent/members", &raw); err != nil {
		return nil, err
	}
	out := make([]ConsulMember, len(raw))
	for i, r := range raw {
		out[i] = ConsulMember{Name: r.Name, Addr: r.Addr + ":" + strconv.Itoa(r.Port), Status: r.Status, Tags: r.Tags}
	}
	return out, nil
}

// ConsulHealth is a snapshot of the local agent's view.
type ConsulHealth struct {
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
func (c Consul) Check(ctx context.Context) ConsulHealth {
	var h ConsulHealth
	self, err := c.Self(ctx)
	if err != nil {
		h.Error = fmt.Sprintf("consul agent at %s not answering: %v", c.addr(), err)
		return h
	}
	h.Reachable = true
	h.Node = self.Config.NodeName
	h.Server = self.Config.Server
	h.BootstrapWant = self.DebugConfig.BootstrapExpect
	if l, err := c.Leader(ctx); err == nil {
		h.Leader = l
	} else {
		h.Error = err.Error()
	}
	if ms, err := c.Members(ctx); err == nil {
		for _, m := range ms {
			if m.Status != 1 {
				continue
			}
			h.Members++
			if m.Name == h.Node {
				h.Member = true
			}
			if m.Server() {
				h.Servers = append(h.Servers, m.Addr)
			}
		}
	} else if h.Error == "" {
		h.Error = err.Error()
	}
	return h
}

func (c Consul) addr() string {
	if c.Addr == "" {
		return DefaultConsulAddr
	}
	return c.Addr
}

// Missing says, in an operator's words, what keeps Consul from being ready
// (an agent that answers and a leader), or "" when it is ready.
func (h ConsulHealth) Missing(join string) string {
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
