// Package imagestest is a DigitalOcean API test server for the imager's tests. It
// paginates like the real API and fails the test on any request it was not told to
// expect.
package imagestest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Image is a snapshot the server holds.
type Image struct {
	ID      int
	Name    string
	Created time.Time
	SizeGB  float64
	Regions []string
	Tags    []string
}

// Droplet is a droplet the server holds.
type Droplet struct {
	ID      int
	Name    string
	ImageID int
	Tags    []string
}

// Key is an account SSH key.
type Key struct {
	ID   int
	Name string
}

// Server is a fake DigitalOcean API.
type Server struct {
	*httptest.Server
	t     testing.TB
	Token string
	// PageSize is the server's page size whatever per_page asks for, so small fixtures
	// still span several pages.
	PageSize int

	// Allow* switch on the mutating endpoints; requests to them are unexpected otherwise.
	AllowDeleteImage   bool
	AllowTagImage      bool
	AllowDeleteDroplet bool
	AllowCreateDroplet bool
	// ReadOnly answers writes with 403, like a token without write scope. Creating the
	// tag the imager checks write access with is allowed otherwise.
	ReadOnly bool

	mu              sync.Mutex
	Images          []Image
	Droplets        []Droplet
	Keys            []Key
	Requests        []string // "METHOD /path?query"
	DeletedImages   []int
	DeletedDroplets []int
	Tagged          map[int][]string
	// ImageRegions answers GET /v2/images/{id} for snapshots a (fake) Packer made.
	ImageRegions map[int][]string
}

// New starts a server accepting token; it stops when the test ends.
func New(t testing.TB, token string) *Server {
	s := &Server{t: t, Token: token, PageSize: 3, Tagged: map[int][]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Count returns how many requests matched prefix ("GET /v2/images").
func (s *Server) Count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.Requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

var (
	imageRE       = regexp.MustCompile(`^/v2/images/(\d+)$`)
	dropletRE     = regexp.MustCompile(`^/v2/droplets/(\d+)$`)
	tagResourceRE = regexp.MustCompile(`^/v2/tags/([^/]+)/resources$`)
)

func (s *Server) unexpected(w http.ResponseWriter, r *http.Request) {
	s.t.Errorf("DigitalOcean test server: unexpected request %s %s", r.Method, r.URL.RequestURI())
	http.Error(w, `{"id":"unexpected","message":"unexpected request"}`, http.StatusTeapot)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Requests = append(s.Requests, r.Method+" "+r.URL.RequestURI())
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"id":"unauthorized","message":"Unable to authenticate you"}`)
		return
	}
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && p == "/v2/account":
		writeJSON(w, http.StatusOK, map[string]any{"account": map[string]any{"uuid": "test", "status": "active"}})
	case r.Method == http.MethodGet && p == "/v2/images":
		if r.URL.Query().Get("private") != "true" {
			s.unexpected(w, r)
			return
		}
		var all []any
		for _, im := range s.Images {
			all = append(all, map[string]any{
				"id": im.ID, "name": im.Name, "type": "snapshot", "distribution": "Debian",
				"public": false, "regions": im.Regions, "created_at": im.Created.UTC().Format(time.RFC3339),
				"size_gigabytes": im.SizeGB, "min_disk_size": 80, "tags": im.Tags, "status": "available",
			})
		}
		s.page(w, r, "images", all)
	case r.Method == http.MethodGet && p == "/v2/droplets":
		tag := r.URL.Query().Get("tag_name")
		var all []any
		for _, d := range s.Droplets {
			if tag != "" && !slices.Contains(d.Tags, tag) {
				continue
			}
			all = append(all, map[string]any{
				"id": d.ID, "name": d.Name, "status": "active", "tags": d.Tags,
				"image": map[string]any{"id": d.ImageID, "name": "whatever"},
			})
		}
		s.page(w, r, "droplets", all)
	case r.Method == http.MethodGet && p == "/v2/account/keys":
		var all []any
		for _, k := range s.Keys {
			all = append(all, map[string]any{"id": k.ID, "name": k.Name})
		}
		s.page(w, r, "ssh_keys", all)
	case r.Method == http.MethodGet && imageRE.MatchString(p):
		id, _ := strconv.Atoi(imageRE.FindStringSubmatch(p)[1])
		regions, ok := s.ImageRegions[id]
		if !ok {
			for _, im := range s.Images {
				if im.ID == id {
					regions, ok = im.Regions, true
				}
			}
		}
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"id": "not_found", "message": "The resource you were accessing could not be found."})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"image": map[string]any{"id": id, "type": "snapshot", "regions": regions, "status": "available"}})
	case r.Method == http.MethodDelete && imageRE.MatchString(p) && s.AllowDeleteImage:
		id, _ := strconv.Atoi(imageRE.FindStringSubmatch(p)[1])
		i := slices.IndexFunc(s.Images, func(im Image) bool { return im.ID == id })
		if i < 0 {
			s.t.Errorf("DigitalOcean test server: delete of unknown image %d", id)
			writeJSON(w, http.StatusNotFound, map[string]any{"id": "not_found", "message": "not found"})
			return
		}
		s.Images = slices.Delete(s.Images, i, i+1)
		s.DeletedImages = append(s.DeletedImages, id)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete && dropletRE.MatchString(p) && s.AllowDeleteDroplet:
		id, _ := strconv.Atoi(dropletRE.FindStringSubmatch(p)[1])
		s.Droplets = slices.DeleteFunc(s.Droplets, func(d Droplet) bool { return d.ID == id })
		s.DeletedDroplets = append(s.DeletedDroplets, id)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && p == "/v2/droplets" && s.AllowCreateDroplet:
		var body struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			s.t.Errorf("DigitalOcean test server: droplet body: %v", err)
		}
		d := Droplet{ID: 7000 + len(s.Requests), Name: body.Name, Tags: body.Tags}
		s.Droplets = append(s.Droplets, d)
		writeJSON(w, http.StatusAccepted, map[string]any{"droplet": map[string]any{"id": d.ID, "name": d.Name, "tags": d.Tags}})
	case r.Method == http.MethodPost && p == "/v2/tags" && s.ReadOnly:
		writeJSON(w, http.StatusForbidden, map[string]any{"id": "forbidden", "message": "You are not authorized to perform this operation"})
	case r.Method == http.MethodPost && p == "/v2/tags":
		var body struct{ Name string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		writeJSON(w, http.StatusCreated, map[string]any{"tag": map[string]any{"name": body.Name}})
	case r.Method == http.MethodPost && tagResourceRE.MatchString(p) && s.AllowTagImage:
		tag, _ := url.PathUnescape(tagResourceRE.FindStringSubmatch(r.URL.EscapedPath())[1])
		var body struct {
			Resources []struct {
				ResourceID   string `json:"resource_id"`
				ResourceType string `json:"resource_type"`
			} `json:"resources"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			s.t.Errorf("DigitalOcean test server: tag body: %v", err)
		}
		for _, res := range body.Resources {
			id, _ := strconv.Atoi(res.ResourceID)
			if res.ResourceType != "image" {
				s.t.Errorf("DigitalOcean test server: tagging a %q, want image", res.ResourceType)
			}
			s.Tagged[id] = append(s.Tagged[id], tag)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		s.unexpected(w, r)
	}
}

// page writes one page of all under key with DigitalOcean's links and meta.
func (s *Server) page(w http.ResponseWriter, r *http.Request, key string, all []any) {
	page := 1
	if v := r.URL.Query().Get("page"); v != "" {
		page, _ = strconv.Atoi(v)
	}
	size := s.PageSize
	last := max(1, (len(all)+size-1)/size)
	if page < 1 || page > last {
		s.t.Errorf("DigitalOcean test server: page %d of %s requested, there are %d", page, key, last)
	}
	lo, hi := min((page-1)*size, len(all)), min(page*size, len(all))
	items := all[lo:hi]
	if items == nil {
		items = []any{}
	}
	link := func(n int) string {
		u := *r.URL
		q := u.Query()
		q.Set("page", strconv.Itoa(n))
		u.RawQuery = q.Encode()
		return s.URL + u.RequestURI()
	}
	pages := map[string]string{}
	if page > 1 {
		pages["first"], pages["prev"] = link(1), link(page-1)
	}
	if page < last {
		pages["next"], pages["last"] = link(page+1), link(last)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		key:     items,
		"links": map[string]any{"pages": pages},
		"meta":  map[string]any{"total": len(all)},
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
