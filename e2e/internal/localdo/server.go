// Package localdo is a local DigitalOcean: an HTTP server speaking the subset of the
// DigitalOcean API v2 that the imager, godo and Packer's DigitalOcean builder use, with
// droplets run as systemd containers (package droplets), snapshots as committed images,
// and the droplet metadata service answered per droplet.
//
// Anything it does not implement is answered in the API's error format and logged at
// error level with "UNIMPLEMENTED": never a fake success.
package localdo

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/digitalocean/godo"
)

// Runtime runs droplets; *droplets.Docker is the real one.
type Runtime interface {
	Create(ctx context.Context, spec droplets.Spec, nets droplets.Networks) (droplets.Instance, error)
	Start(ctx context.Context, id int, metadataTarget string) error
	RedirectMetadata(ctx context.Context, id int, target string) error
	Stop(ctx context.Context, id int, graceful bool, timeout time.Duration) error
	Running(ctx context.Context, id int) (bool, error)
	Exists(ctx context.Context, id int) bool
	Commit(ctx context.Context, dropletID, imageID int, ref string) (droplets.ImageInfo, error)
	SnapshotRef(imageID int) string
	Image(ctx context.Context, ref string) (droplets.ImageInfo, error)
	RemoveImage(ctx context.Context, ref string) error
	Remove(ctx context.Context, id int) error
}

// BaseImage is a distribution image droplets can be created from by slug.
type BaseImage struct {
	ID           int
	Slug         string
	Name         string
	Distribution string
	// Ref is the Docker image (made by `make deps`).
	Ref string
}

// DefaultBaseImages is Debian 12, built by `make deps` with debootstrap.
var DefaultBaseImages = []BaseImage{{
	ID: 139000001, Slug: "debian-12-x64", Name: "12 x64", Distribution: "Debian",
	Ref: "codelab-local/debian-12-x64:latest",
}}

// Config configures a Server.
type Config struct {
	Runtime  Runtime
	Networks droplets.Networks
	// StateDir keeps state.json; empty keeps state in memory only.
	StateDir string
	// MetadataTarget is host:port where the server's MetadataHandler listens, reachable
	// from droplets (normally the public network's gateway).
	MetadataTarget string
	BaseImages     []BaseImage
	// InsecureRegistries are written to every new droplet's /etc/docker/daemon.json, so
	// its Docker pulls from the local registry over plain HTTP.
	InsecureRegistries []string
	// Token, when set, is the only API token accepted (401 otherwise, as DigitalOcean
	// answers a bad token); empty accepts any non-empty token.
	Token string
	// ReadOnlyTokens are accepted for reads only, like DigitalOcean tokens with read
	// scope alone: any other request with one answers 403 forbidden and changes nothing.
	ReadOnlyTokens []string
	// MaxPerPage caps per_page (default 200, DigitalOcean's cap); tests lower it so a
	// few items span several pages.
	MaxPerPage int
	// ShutdownTimeout bounds a graceful shutdown before it fails (default 60s).
	ShutdownTimeout time.Duration
	Log             *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the local DigitalOcean.
type Server struct {
	cfg  Config
	log  *slog.Logger
	mu   sync.Mutex
	st   *store
	bg   sync.WaitGroup
	ctx  context.Context
	stop context.CancelFunc
	reqN uint64
}

// New loads the state in cfg.StateDir and returns a server. Call Reconcile once the
// metadata listener runs, and Close when done.
func New(cfg Config) (*Server, error) {
	if cfg.Runtime == nil {
		return nil, errors.New("local DigitalOcean: no droplet runtime")
	}
	if cfg.BaseImages == nil {
		cfg.BaseImages = DefaultBaseImages
	}
	if cfg.MaxPerPage <= 0 {
		cfg.MaxPerPage = 200
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st, err := loadStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Log, st: st, ctx: ctx, stop: cancel}, nil
}

// Close cancels background actions and waits for them.
func (s *Server) Close() {
	s.stop()
	s.bg.Wait()
}

// Reconcile brings the saved droplets in line with their containers after a restart:
// running ones get the metadata redirect again, stopped ones are "off", interrupted
// actions are errored.
func (s *Server) Reconcile(ctx context.Context) error {
	s.mu.Lock()
	ids := make([]int, 0, len(s.st.Droplets))
	for id := range s.st.Droplets {
		ids = append(ids, id)
	}
	for _, a := range s.st.Actions {
		if a.Status == "in-progress" {
			a.Status, a.Error = "errored", "interrupted by a restart of the local DigitalOcean"
			t := s.cfg.Now()
			a.CompletedAt = &t
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, id := range ids {
		status := "off"
		if !s.cfg.Runtime.Exists(ctx, id) {
			s.log.Error("droplet has no container any more; forgetting it", "droplet", id)
			s.mu.Lock()
			delete(s.st.Droplets, id)
			s.mu.Unlock()
			continue
		}
		running, err := s.cfg.Runtime.Running(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if running {
			status = "active"
			if err := s.cfg.Runtime.RedirectMetadata(ctx, id, s.cfg.MetadataTarget); err != nil {
				errs = append(errs, err)
			}
		}
		s.mu.Lock()
		if d := s.st.Droplets[id]; d != nil {
			d.Status, d.Locked = status, false
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.st.save(s.cfg.StateDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// apiError is the DigitalOcean API's error body.
type apiError struct {
	status  int
	ID      string `json:"id"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.ID + ": " + e.Message }

func notFound() *apiError {
	return &apiError{http.StatusNotFound, "not_found", "The resource you were accessing could not be found."}
}

// forbidden is DigitalOcean's answer to a write with a token that has read scope only.
func forbidden() *apiError {
	return &apiError{http.StatusForbidden, "forbidden", "You do not have access for the attempted action."}
}

func unprocessable(format string, a ...any) *apiError {
	return &apiError{http.StatusUnprocessableEntity, "unprocessable_entity", fmt.Sprintf(format, a...)}
}

func serverError(err error) *apiError {
	return &apiError{http.StatusInternalServerError, "server_error", err.Error()}
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Routes lists the API routes the server implements ("GET /v2/droplets/{id}"), sorted.
func (s *Server) Routes() []string {
	var out []string
	for pattern := range s.routes() {
		out = append(out, pattern)
	}
	sort.Strings(out)
	return out
}

// Handler serves the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for pattern, h := range s.routes() {
		mux.Handle(pattern, s.wrap(h))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			s.log.Error("UNIMPLEMENTED DigitalOcean API route", "method", r.Method, "path", r.URL.Path)
			s.writeError(w, r, &apiError{http.StatusNotFound, "not_found",
				fmt.Sprintf("The local DigitalOcean does not implement %s %s.", r.Method, r.URL.Path)})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) routes() map[string]handlerFunc {
	return map[string]handlerFunc{
		"GET /v2/account":                         s.getAccount,
		"GET /v2/account/keys":                    s.listKeys,
		"POST /v2/account/keys":                   s.createKey,
		"GET /v2/account/keys/{key}":              s.getKey,
		"PUT /v2/account/keys/{key}":              s.updateKey,
		"DELETE /v2/account/keys/{key}":           s.deleteKey,
		"GET /v2/regions":                         s.listRegions,
		"GET /v2/sizes":                           s.listSizes,
		"GET /v2/droplets":                        s.listDroplets,
		"POST /v2/droplets":                       s.createDroplet,
		"DELETE /v2/droplets":                     s.deleteDropletsByTag,
		"GET /v2/droplets/{id}":                   s.getDroplet,
		"DELETE /v2/droplets/{id}":                s.deleteDroplet,
		"GET /v2/droplets/{id}/snapshots":         s.listDropletSnapshots,
		"GET /v2/droplets/{id}/actions":           s.listDropletActions,
		"POST /v2/droplets/{id}/actions":          s.createDropletAction,
		"GET /v2/droplets/{id}/actions/{action}":  s.getDropletAction,
		"GET /v2/actions":                         s.listActions,
		"GET /v2/actions/{action}":                s.getAction,
		"GET /v2/images":                          s.listImages,
		"GET /v2/images/{image}":                  s.getImage,
		"PUT /v2/images/{image}":                  s.updateImage,
		"DELETE /v2/images/{image}":               s.deleteImage,
		"POST /v2/images/{image}/actions":         s.createImageAction,
		"GET /v2/images/{image}/actions/{action}": s.getImageAction,
		"GET /v2/snapshots":                       s.listSnapshots,
		"GET /v2/snapshots/{id}":                  s.getSnapshot,
		"DELETE /v2/snapshots/{id}":               s.deleteSnapshot,
		"GET /v2/tags":                            s.listTags,
		"POST /v2/tags":                           s.createTag,
		"GET /v2/tags/{tag}":                      s.getTag,
		"DELETE /v2/tags/{tag}":                   s.deleteTag,
		"POST /v2/tags/{tag}/resources":           s.tagResources,
		"DELETE /v2/tags/{tag}/resources":         s.untagResources,
	}
}

func (s *Server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		token := strings.TrimSpace(strings.TrimPrefix(auth, "Bearer "))
		readOnly := token != "" && slices.Contains(s.cfg.ReadOnlyTokens, token)
		if !strings.HasPrefix(auth, "Bearer ") || token == "" || (s.cfg.Token != "" && token != s.cfg.Token && !readOnly) {
			s.writeError(w, r, &apiError{http.StatusUnauthorized, "unauthorized", "Unable to authenticate you"})
			return
		}
		if readOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.writeError(w, r, forbidden())
			s.log.Warn("api", "method", r.Method, "path", r.URL.RequestURI(), "status", http.StatusForbidden, "error", "a read-only token may not write")
			return
		}
		start := time.Now()
		err := h(w, r)
		lvl := slog.LevelDebug
		if r.Method != http.MethodGet {
			lvl = slog.LevelInfo
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				ae = serverError(err)
			}
			lvl = slog.LevelWarn
			if ae.status >= 500 {
				lvl = slog.LevelError
			}
			s.writeError(w, r, ae)
			s.log.Log(r.Context(), lvl, "api", "method", r.Method, "path", r.URL.RequestURI(), "status", ae.status, "error", ae.Message, "duration", time.Since(start))
			return
		}
		s.log.Log(r.Context(), lvl, "api", "method", r.Method, "path", r.URL.RequestURI(), "duration", time.Since(start))
	})
}

func (s *Server) requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) writeError(w http.ResponseWriter, _ *http.Request, e *apiError) {
	writeJSON(w, e.status, map[string]string{"id": e.ID, "message": e.Message, "request_id": s.requestID()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("RateLimit-Limit", "5000")
	w.Header().Set("RateLimit-Remaining", "4999")
	w.Header().Set("RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func noContent(w http.ResponseWriter) error {
	writeJSON(w, http.StatusNoContent, nil)
	return nil
}

// decode reads a JSON body strictly: unknown fields are a 422.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return unprocessable("read request body: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return unprocessable("The local DigitalOcean could not use the request body: %v", err)
	}
	return nil
}

// checkQuery fails with 422 on query parameters a route does not understand.
func checkQuery(r *http.Request, allowed ...string) error {
	for k := range r.URL.Query() {
		ok := k == "page" || k == "per_page"
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return unprocessable("The local DigitalOcean does not support the query parameter %q on %s.", k, r.URL.Path)
		}
	}
	return nil
}

// paginate returns the page of items the request asks for with the API's links and meta.
func paginate[T any](r *http.Request, key string, items []T, maxPerPage int) (map[string]any, error) {
	q := r.URL.Query()
	page, perPage := 1, 20
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, unprocessable("page must be a positive integer")
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, unprocessable("per_page must be a positive integer")
		}
		perPage = n
	}
	perPage = min(perPage, maxPerPage)
	total := len(items)
	last := max(1, (total+perPage-1)/perPage)
	lo := min((page-1)*perPage, total)
	hi := min(lo+perPage, total)
	link := func(p int) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("page", strconv.Itoa(p))
		qq.Set("per_page", strconv.Itoa(perPage))
		u.RawQuery = qq.Encode()
		return u.String()
	}
	// As the API: "links": {} on a single page, pages.first/prev after the first,
	// pages.next/last before the last.
	var links godo.Links
	if page > 1 || page < last {
		links.Pages = &godo.Pages{}
	}
	if page > 1 {
		links.Pages.First, links.Pages.Prev = link(1), link(min(page-1, last))
	}
	if page < last {
		links.Pages.Next, links.Pages.Last = link(page+1), link(last)
	}
	out := map[string]any{
		key:     wire(items[lo:hi]),
		"links": links,
		"meta":  godo.Meta{Total: total},
	}
	return out, nil
}

func pathID(r *http.Request, name string) (int, error) {
	id, err := strconv.Atoi(r.PathValue(name))
	if err != nil || id <= 0 {
		return 0, notFound()
	}
	return id, nil
}

// --- account, keys, regions, sizes -----------------------------------------------------

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) error {
	writeOne(w, http.StatusOK, "account", godo.Account{
		DropletLimit: 25, FloatingIPLimit: 3, ReservedIPLimit: 3, VolumeLimit: 10,
		Email: "local@codelab.invalid", Name: "Local DigitalOcean", UUID: "00000000-0000-4000-8000-00000000c0de",
		EmailVerified: true, Status: "active",
		Team: &godo.TeamInfo{Name: "My Team", UUID: "00000000-0000-4000-8000-00000000feed"},
	})
	return nil
}

// writeOne writes one resource under key in the API's shape ({"droplet": {...}}).
func writeOne(w http.ResponseWriter, status int, key string, v any) {
	writeJSON(w, status, map[string]any{key: wire(v)})
}

func keyJSON(k *key) godo.Key {
	return godo.Key{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint, PublicKey: k.PublicKey}
}

// fingerprint is the MD5 fingerprint DigitalOcean shows for an SSH public key.
func fingerprint(pub string) (string, error) {
	f := strings.Fields(pub)
	if len(f) < 2 {
		return "", fmt.Errorf("not an SSH public key in authorized_keys format")
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return "", fmt.Errorf("SSH public key: %v", err)
	}
	sum := md5.Sum(blob)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = hex.EncodeToString([]byte{b})
	}
	return strings.Join(parts, ":"), nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	s.mu.Lock()
	var out []godo.Key
	for _, id := range sortedKeys(s.st.Keys) {
		out = append(out, keyJSON(s.st.Keys[id]))
	}
	s.mu.Unlock()
	return writePage(s, w, r, "ssh_keys", out)
}

// writePage writes the page of items the request asks for, under key, with links and meta.
func writePage[T any](s *Server, w http.ResponseWriter, r *http.Request, key string, items []T) error {
	body, err := paginate(r, key, items, s.cfg.MaxPerPage)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return unprocessable("name is required")
	}
	fp, err := fingerprint(req.PublicKey)
	if err != nil {
		return unprocessable("public_key: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.st.Keys {
		if k.Fingerprint == fp {
			return unprocessable("SSH Key is already in use on your account")
		}
	}
	k := &key{ID: s.st.id(), Name: req.Name, Fingerprint: fp, PublicKey: strings.TrimSpace(req.PublicKey)}
	s.st.Keys[k.ID] = k
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	writeOne(w, http.StatusCreated, "ssh_key", keyJSON(k))
	return nil
}

// findKey resolves an id or a fingerprint; the caller holds s.mu.
func (s *Server) findKey(ref string) *key {
	if id, err := strconv.Atoi(ref); err == nil {
		return s.st.Keys[id]
	}
	for _, k := range s.st.Keys {
		if k.Fingerprint == ref {
			return k
		}
	}
	return nil
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.findKey(r.PathValue("key"))
	if k == nil {
		return notFound()
	}
	writeOne(w, http.StatusOK, "ssh_key", keyJSON(k))
	return nil
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.findKey(r.PathValue("key"))
	if k == nil {
		return notFound()
	}
	if req.Name != "" {
		k.Name = req.Name
	}
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "ssh_key", keyJSON(k))
	return nil
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.findKey(r.PathValue("key"))
	if k == nil {
		return notFound()
	}
	delete(s.st.Keys, k.ID)
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	return noContent(w)
}

type regionDef struct{ slug, name string }

var regionDefs = []regionDef{
	{"ams3", "Amsterdam 3"}, {"blr1", "Bangalore 1"}, {"fra1", "Frankfurt 1"}, {"lon1", "London 1"},
	{"nyc1", "New York 1"}, {"nyc3", "New York 3"}, {"sfo3", "San Francisco 3"},
	{"sgp1", "Singapore 1"}, {"syd1", "Sydney 1"}, {"tor1", "Toronto 1"},
}

type sizeDef struct {
	slug                string
	memory, vcpus, disk int
	monthly             float64
}

// Sizes are not enforced on containers; they are what the API reports.
var sizeDefs = []sizeDef{
	{"s-1vcpu-1gb", 1024, 1, 25, 6}, {"s-1vcpu-2gb", 2048, 1, 50, 12},
	{"s-2vcpu-2gb", 2048, 2, 60, 18}, {"s-2vcpu-4gb", 4096, 2, 80, 24},
	{"s-4vcpu-8gb", 8192, 4, 160, 48}, {"s-8vcpu-16gb", 16384, 8, 320, 96},
}

func regionSlugs() []string {
	out := make([]string, len(regionDefs))
	for i, r := range regionDefs {
		out[i] = r.slug
	}
	return out
}

func sizeSlugs() []string {
	out := make([]string, len(sizeDefs))
	for i, z := range sizeDefs {
		out[i] = z.slug
	}
	return out
}

func findRegion(slug string) (regionDef, bool) {
	for _, r := range regionDefs {
		if r.slug == slug {
			return r, true
		}
	}
	return regionDef{}, false
}

func findSize(slug string) (sizeDef, bool) {
	for _, z := range sizeDefs {
		if z.slug == slug {
			return z, true
		}
	}
	return sizeDef{}, false
}

func regionJSON(slug string) *godo.Region {
	r, _ := findRegion(slug)
	return &godo.Region{
		Slug: r.slug, Name: r.name, Sizes: sizeSlugs(), Available: true,
		Features: []string{"backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"},
	}
}

func sizeJSON(slug string) *godo.Size {
	z, _ := findSize(slug)
	return &godo.Size{
		Slug: z.slug, Memory: z.memory, Vcpus: z.vcpus, Disk: z.disk,
		Transfer: float64(z.vcpus) * 1.0, PriceMonthly: z.monthly,
		PriceHourly: float64(int(z.monthly/730*100000)) / 100000,
		Regions:     regionSlugs(), Available: true, Description: "Basic",
		DiskInfo: []godo.DiskInfo{{Type: "local", Size: &godo.DiskSize{Amount: z.disk, Unit: "gib"}}},
		// GPUInfo stays nil: "gpu_info": null, as the API sends for sizes without a GPU.
	}
}

func (s *Server) listRegions(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	var out []*godo.Region
	for _, rd := range regionDefs {
		out = append(out, regionJSON(rd.slug))
	}
	return writePage(s, w, r, "regions", out)
}

func (s *Server) listSizes(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	var out []*godo.Size
	for _, z := range sizeDefs {
		out = append(out, sizeJSON(z.slug))
	}
	return writePage(s, w, r, "sizes", out)
}

// --- tags --------------------------------------------------------------------------------

var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_:\-]{1,255}$`)

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// tagJSON describes a tag with its resource counts; the caller holds s.mu.
func (s *Server) tagJSON(name string) godo.Tag {
	dr := &godo.TaggedDropletsResources{}
	ir := &godo.TaggedImagesResources{}
	last := ""
	for _, id := range sortedKeys(s.st.Droplets) {
		if d := s.st.Droplets[id]; hasTag(d.Tags, name) {
			dr.Count++
			dr.LastTagged = s.dropletJSON(d)
			dr.LastTaggedURI = fmt.Sprintf("/v2/droplets/%d", d.ID)
			last = dr.LastTaggedURI
		}
	}
	for _, id := range sortedKeys(s.st.Images) {
		if im := s.st.Images[id]; hasTag(im.Tags, name) {
			ir.Count++
			ir.LastTaggedURI = fmt.Sprintf("/v2/images/%d", im.ID)
			last = ir.LastTaggedURI
		}
	}
	return godo.Tag{Name: name, Resources: &godo.TaggedResources{
		Count: dr.Count + ir.Count, LastTaggedURI: last, Droplets: dr, Images: ir,
		Volumes: &godo.TaggedVolumesResources{}, VolumeSnapshots: &godo.TaggedVolumeSnapshotsResources{},
		Databases: &godo.TaggedDatabasesResources{},
	}}
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.st.Tags))
	for t := range s.st.Tags {
		names = append(names, t)
	}
	sort.Strings(names)
	var out []godo.Tag
	for _, n := range names {
		out = append(out, s.tagJSON(n))
	}
	s.mu.Unlock()
	return writePage(s, w, r, "tags", out)
}

func (s *Server) createTag(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if !tagRE.MatchString(req.Name) {
		return unprocessable("name must be 1-255 letters, digits, ':', '-' or '_'")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Tags[req.Name] = true
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	writeOne(w, http.StatusCreated, "tag", s.tagJSON(req.Name))
	return nil
}

func (s *Server) getTag(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.PathValue("tag")
	if !s.st.Tags[name] {
		return notFound()
	}
	writeOne(w, http.StatusOK, "tag", s.tagJSON(name))
	return nil
}

func (s *Server) deleteTag(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.PathValue("tag")
	if !s.st.Tags[name] {
		return notFound()
	}
	delete(s.st.Tags, name)
	for _, d := range s.st.Droplets {
		d.Tags = without(d.Tags, name)
	}
	for _, im := range s.st.Images {
		im.Tags = without(im.Tags, name)
	}
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	return noContent(w)
}

func without(tags []string, t string) []string {
	out := tags[:0:0]
	for _, x := range tags {
		if x != t {
			out = append(out, x)
		}
	}
	return out
}

type tagResourcesReq struct {
	Resources []struct {
		ID   string `json:"resource_id"`
		Type string `json:"resource_type"`
	} `json:"resources"`
}

func (s *Server) tagResources(w http.ResponseWriter, r *http.Request) error {
	return s.retag(w, r, true)
}

func (s *Server) untagResources(w http.ResponseWriter, r *http.Request) error {
	return s.retag(w, r, false)
}

func (s *Server) retag(w http.ResponseWriter, r *http.Request, add bool) error {
	var req tagResourcesReq
	if err := decode(r, &req); err != nil {
		return err
	}
	name := r.PathValue("tag")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.st.Tags[name] {
		return notFound()
	}
	if len(req.Resources) == 0 {
		return unprocessable("resources must not be empty")
	}
	// Validate everything before changing anything.
	var targets []*[]string
	for _, res := range req.Resources {
		id, err := strconv.Atoi(res.ID)
		if err != nil {
			return unprocessable("resource_id %q is not a droplet or image id", res.ID)
		}
		switch res.Type {
		case "droplet":
			d := s.st.Droplets[id]
			if d == nil {
				return unprocessable("droplet %d does not exist", id)
			}
			targets = append(targets, &d.Tags)
		case "image":
			im := s.st.Images[id]
			if im == nil || im.Type != "snapshot" {
				return unprocessable("image %d does not exist or is not a snapshot", id)
			}
			targets = append(targets, &im.Tags)
		default:
			s.log.Error("UNIMPLEMENTED tag resource type", "resource_type", res.Type)
			return unprocessable("The local DigitalOcean does not implement tagging resources of type %q.", res.Type)
		}
	}
	for _, t := range targets {
		if add && !hasTag(*t, name) {
			*t = append(*t, name)
		} else if !add {
			*t = without(*t, name)
		}
	}
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	return noContent(w)
}

// addTags records tags created implicitly by a droplet create; the caller holds s.mu.
func (s *Server) addTags(tags []string) {
	for _, t := range tags {
		s.st.Tags[t] = true
	}
}

// vpcUUID is the one VPC of the local DigitalOcean.
const vpcUUID = "5a4981aa-9653-4bd1-bef5-d6bff52042e4"

// addrInfo gives the netmask and gateway of network n.
func addrInfo(n droplets.Network) (netmask, gateway string) {
	bits := n.Subnet.Bits()
	if bits < 0 {
		return "", ""
	}
	m := uint32(0xffffffff) << (32 - bits)
	mask := netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)})
	return mask.String(), n.Gateway.String()
}
