// Package localdotest runs the local DigitalOcean in process for the tests of other
// modules (the imager's): the same API server as `localdo serve` (package
// e2e/internal/localdo, same routes, same answers, same paging), with droplets kept in
// memory instead of Docker containers. It is the one fake DigitalOcean of the repository.
//
// It lives outside e2e/internal so that modules other than e2e may import it; it is meant
// for _test.go files only.
package localdotest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/codelab-app/infra/e2e/internal/localdo"
	"github.com/digitalocean/godo"
	"golang.org/x/crypto/ssh"
)

// Options configure a Server.
type Options struct {
	// Token is the only API token accepted; others get DigitalOcean's 401.
	Token string
	// ReadOnlyTokens are accepted for reads only (a token with read scope alone): any
	// write with one answers 403 {"id":"forbidden",...} and changes nothing.
	ReadOnlyTokens []string
	// PageSize caps per_page, so a few items span several pages (default 200, the API's cap).
	PageSize int
}

// Snapshot is a snapshot to put in the account (see localdo.Server.AddSnapshot).
type Snapshot = localdo.Snapshot

// Server is a running in-process local DigitalOcean.
type Server struct {
	// URL is the API's base URL (http://127.0.0.1:PORT).
	URL string
	t   testing.TB
	srv *localdo.Server
	do  *godo.Client

	mu       sync.Mutex
	requests []string
}

// New starts a server; it stops when the test ends.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := localdo.New(localdo.Config{
		Runtime: newMemRuntime(), Networks: networks, MetadataTarget: "10.250.0.1:80",
		Token: o.Token, ReadOnlyTokens: o.ReadOnlyTokens, MaxPerPage: o.PageSize, Log: log,
	})
	if err != nil {
		t.Fatalf("local DigitalOcean: %v", err)
	}
	s := &Server{t: t, srv: srv}
	api := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
		s.mu.Unlock()
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.Close(); srv.Close() })
	s.URL = hs.URL
	token := o.Token
	if token == "" {
		token = "localdotest"
	}
	s.do = godo.NewFromToken(token)
	s.do.BaseURL, _ = s.do.BaseURL.Parse(hs.URL + "/")
	return s
}

// Requests returns every request so far as "METHOD /path?query".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Count returns how many requests start with prefix ("GET /v2/images", "DELETE").
func (s *Server) Count(prefix string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// AddSnapshot puts a snapshot into the account and returns its id; the test fails on
// a bad snapshot or a taken id.
func (s *Server) AddSnapshot(sn Snapshot) int {
	s.t.Helper()
	id, err := s.srv.AddSnapshot(sn)
	if err != nil {
		s.t.Fatalf("local DigitalOcean: %v", err)
	}
	return id
}

// CreateDroplet creates a droplet from image (an id) through the API, as a client would,
// and returns its id.
func (s *Server) CreateDroplet(name string, image int, tags ...string) int {
	s.t.Helper()
	d, _, err := s.do.Droplets.Create(context.Background(), &godo.DropletCreateRequest{
		Name: name, Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{ID: image}, Tags: tags,
	})
	if err != nil {
		s.t.Fatalf("local DigitalOcean: create droplet %s: %v", name, err)
	}
	return d.ID
}

// AddKey adds an SSH key (a fresh ed25519 key) to the account and returns its id.
func (s *Server) AddKey(name string) int {
	s.t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		s.t.Fatal(err)
	}
	k, _, err := s.do.Keys.Create(context.Background(), &godo.KeyCreateRequest{Name: name, PublicKey: string(ssh.MarshalAuthorizedKey(sshPub))})
	if err != nil {
		s.t.Fatalf("local DigitalOcean: add key %s: %v", name, err)
	}
	return k.ID
}

// Snapshots lists the account's snapshots through the API (every page).
func (s *Server) Snapshots() []godo.Image {
	s.t.Helper()
	var out []godo.Image
	s.walk("list snapshots", func(opt *godo.ListOptions) (*godo.Response, error) {
		imgs, resp, err := s.do.Images.ListUser(context.Background(), opt)
		out = append(out, imgs...)
		return resp, err
	})
	return out
}

// walk calls page for every page of a list.
func (s *Server) walk(what string, page func(*godo.ListOptions) (*godo.Response, error)) {
	s.t.Helper()
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	for {
		resp, err := page(opt)
		if err != nil {
			s.t.Fatalf("local DigitalOcean: %s: %v", what, err)
		}
		if resp.Links == nil || resp.Links.IsLastPage() {
			return
		}
		opt.Page++
	}
}

// Image returns one image through the API.
func (s *Server) Image(id int) godo.Image {
	s.t.Helper()
	im, _, err := s.do.Images.GetByID(context.Background(), id)
	if err != nil {
		s.t.Fatalf("local DigitalOcean: image %d: %v", id, err)
	}
	return *im
}

// Droplets lists the account's droplets through the API (every page).
func (s *Server) Droplets() []godo.Droplet {
	s.t.Helper()
	var out []godo.Droplet
	s.walk("list droplets", func(opt *godo.ListOptions) (*godo.Response, error) {
		ds, resp, err := s.do.Droplets.List(context.Background(), opt)
		out = append(out, ds...)
		return resp, err
	})
	return out
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log("localdo: " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var networks = droplets.Networks{
	Public:  droplets.Network{Name: "localdotest-public", Subnet: netip.MustParsePrefix("10.250.0.0/24"), Gateway: netip.MustParseAddr("10.250.0.1")},
	Private: droplets.Network{Name: "localdotest-vpc", Subnet: netip.MustParsePrefix("10.251.0.0/24"), Gateway: netip.MustParseAddr("10.251.0.1")},
}

// memRuntime keeps droplets as records: creating, starting, stopping and snapshotting
// them always works and takes no time.
type memRuntime struct {
	mu      sync.Mutex
	running map[int]bool
}

func newMemRuntime() *memRuntime { return &memRuntime{running: map[int]bool{}} }

func (m *memRuntime) Create(_ context.Context, spec droplets.Spec, _ droplets.Networks) (droplets.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running[spec.DropletID] = false
	return droplets.Instance{Container: fmt.Sprint("localdotest-", spec.DropletID)}, nil
}

func (m *memRuntime) Start(_ context.Context, id int, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running[id] = true
	return nil
}

func (m *memRuntime) RedirectMetadata(context.Context, int, string) error { return nil }

func (m *memRuntime) Stop(_ context.Context, id int, _ bool, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running[id] = false
	return nil
}

func (m *memRuntime) Running(_ context.Context, id int) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running[id], nil
}

func (m *memRuntime) Exists(_ context.Context, id int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.running[id]
	return ok
}

func (m *memRuntime) Commit(_ context.Context, _, _ int, ref string) (droplets.ImageInfo, error) {
	return droplets.ImageInfo{Ref: ref, Size: 2_500_000_000}, nil
}

func (m *memRuntime) SnapshotRef(imageID int) string {
	return fmt.Sprint("localdotest/snapshot:", imageID)
}

func (m *memRuntime) Image(_ context.Context, ref string) (droplets.ImageInfo, error) {
	return droplets.ImageInfo{Ref: ref, Size: 1}, nil
}

func (m *memRuntime) RemoveImage(context.Context, string) error { return nil }

func (m *memRuntime) Remove(_ context.Context, id int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.running, id)
	return nil
}

var _ localdo.Runtime = (*memRuntime)(nil)
