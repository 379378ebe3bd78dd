package localdo

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/digitalocean/godo"
)

var baseCreated = time.Date(2023, 6, 10, 0, 0, 0, 0, time.UTC)

// imageByID returns a snapshot or a base image; the caller holds s.mu.
func (s *Server) imageByID(id int) *image {
	if im := s.st.Images[id]; im != nil {
		return im
	}
	for _, b := range s.cfg.BaseImages {
		if b.ID == id {
			return &image{
				ID: b.ID, Name: b.Name, Type: "base", Distribution: b.Distribution, Slug: b.Slug,
				Public: true, Regions: regionSlugs(), MinDiskSize: 10, SizeGB: 0.5,
				Created: baseCreated, Tags: []string{}, Ref: b.Ref,
			}
		}
	}
	return nil
}

func (s *Server) imageJSON(im *image) *godo.Image {
	return &godo.Image{
		ID: im.ID, Name: im.Name, Type: im.Type, Distribution: im.Distribution, Slug: im.Slug,
		Public: im.Public, Regions: append([]string{}, im.Regions...), MinDiskSize: im.MinDiskSize,
		SizeGigaBytes: im.SizeGB, Created: im.Created.UTC().Format(time.RFC3339),
		Description: im.Description, Tags: append([]string{}, im.Tags...), Status: "available",
	}
}

// allImages lists base images then snapshots; the caller holds s.mu.
func (s *Server) allImages() []*image {
	var out []*image
	for _, b := range s.cfg.BaseImages {
		out = append(out, s.imageByID(b.ID))
	}
	for _, id := range sortedKeys(s.st.Images) {
		out = append(out, s.st.Images[id])
	}
	return out
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "private", "type", "tag_name"); err != nil {
		return err
	}
	q := r.URL.Query()
	private := q.Get("private") == "true"
	typ, tag := q.Get("type"), q.Get("tag_name")
	switch typ {
	case "", "distribution", "application":
	default:
		return unprocessable("type must be distribution or application")
	}
	s.mu.Lock()
	var out []*godo.Image
	for _, im := range s.allImages() {
		if private && im.Public {
			continue
		}
		if typ == "distribution" && im.Type != "base" {
			continue
		}
		if typ == "application" {
			continue // the local DigitalOcean has no marketplace images
		}
		if tag != "" && !hasTag(im.Tags, tag) {
			continue
		}
		out = append(out, s.imageJSON(im))
	}
	s.mu.Unlock()
	return writePage(s, w, r, "images", out)
}

// findImage resolves an id or a slug; the caller holds s.mu.
func (s *Server) findImage(ref string) *image {
	if id, err := strconv.Atoi(ref); err == nil {
		return s.imageByID(id)
	}
	for _, b := range s.cfg.BaseImages {
		if b.Slug == ref {
			return s.imageByID(b.ID)
		}
	}
	return nil
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.findImage(r.PathValue("image"))
	if im == nil {
		return notFound()
	}
	writeOne(w, http.StatusOK, "image", s.imageJSON(im))
	return nil
}

func (s *Server) updateImage(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name         string `json:"name"`
		Description  string `json:"description"`
		Distribution string `json:"distribution"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.findImage(r.PathValue("image"))
	if im == nil {
		return notFound()
	}
	if im.Type != "snapshot" {
		return unprocessable("only snapshots can be updated")
	}
	if req.Name != "" {
		im.Name = req.Name
	}
	if req.Description != "" {
		im.Description = req.Description
	}
	if req.Distribution != "" {
		im.Distribution = req.Distribution
	}
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "image", s.imageJSON(im))
	return nil
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) error {
	return s.removeSnapshot(w, r, r.PathValue("image"))
}

func (s *Server) removeSnapshot(w http.ResponseWriter, r *http.Request, ref string) error {
	s.mu.Lock()
	im := s.findImage(ref)
	if im == nil {
		s.mu.Unlock()
		return notFound()
	}
	if im.Type != "snapshot" {
		s.mu.Unlock()
		return unprocessable("distribution images cannot be deleted")
	}
	delete(s.st.Images, im.ID)
	for _, d := range s.st.Droplets {
		d.SnapshotIDs = withoutInt(d.SnapshotIDs, im.ID)
	}
	err := s.st.save(s.cfg.StateDir)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.cfg.Runtime.RemoveImage(r.Context(), im.Ref); err != nil {
		return serverError(err)
	}
	s.log.Info("snapshot deleted", "image", im.ID, "name", im.Name)
	return noContent(w)
}

func withoutInt(ids []int, x int) []int {
	out := ids[:0:0]
	for _, v := range ids {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// snapshotJSON is a snapshot in the /v2/snapshots shape (ids are strings there).
func (s *Server) snapshotJSON(im *image) godo.Snapshot {
	return godo.Snapshot{
		ID: strconv.Itoa(im.ID), Name: im.Name, ResourceID: strconv.Itoa(im.DropletID),
		ResourceType: "droplet", Regions: append([]string{}, im.Regions...), MinDiskSize: im.MinDiskSize,
		SizeGigaBytes: im.SizeGB, Created: im.Created.UTC().Format(time.RFC3339), Tags: append([]string{}, im.Tags...),
	}
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "resource_type"); err != nil {
		return err
	}
	switch r.URL.Query().Get("resource_type") {
	case "", "droplet":
	case "volume":
		return writePage(s, w, r, "snapshots", []godo.Snapshot{})
	default:
		return unprocessable("resource_type must be droplet or volume")
	}
	s.mu.Lock()
	var out []godo.Snapshot
	for _, id := range sortedKeys(s.st.Images) {
		out = append(out, s.snapshotJSON(s.st.Images[id]))
	}
	s.mu.Unlock()
	return writePage(s, w, r, "snapshots", out)
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.st.Images[id]
	if im == nil {
		return notFound()
	}
	writeOne(w, http.StatusOK, "snapshot", s.snapshotJSON(im))
	return nil
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) error {
	return s.removeSnapshot(w, r, r.PathValue("id"))
}

// imageActionReq is what godo's ImageActions.Transfer and Convert send.
type imageActionReq struct {
	Type   string `json:"type"`
	Region string `json:"region"`
}

// createImageAction implements the transfer action: the snapshot becomes available in
// another region (its "regions" grows), which is what Packer's snapshot_regions asks for
// and what Terraform's `data "digitalocean_image"` lookup with `region` needs. The
// snapshot's Docker image is the same in every region, so the transfer is bookkeeping.
func (s *Server) createImageAction(w http.ResponseWriter, r *http.Request) error {
	var req imageActionReq
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Type != "transfer" {
		s.log.Error("UNIMPLEMENTED image action", "type", req.Type, "image", r.PathValue("image"))
		return unprocessable("The local DigitalOcean does not implement the image action %q.", req.Type)
	}
	if _, ok := findRegion(req.Region); !ok {
		return unprocessable("region %q is not a region (see GET /v2/regions)", req.Region)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.findImage(r.PathValue("image"))
	if im == nil {
		return notFound()
	}
	if im.Type != "snapshot" {
		return unprocessable("image %d is a distribution image; it is in every region already", im.ID)
	}
	a := &action{ID: s.st.id(), Status: "in-progress", Type: "transfer", StartedAt: s.cfg.Now(),
		ResourceID: im.ID, ResourceType: "image", Region: req.Region}
	s.st.Actions[a.ID] = a
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		t := s.cfg.Now()
		a.Status, a.CompletedAt = "completed", &t
		if cur := s.st.Images[im.ID]; cur == nil {
			a.Status, a.Error = "errored", "the image was deleted during the transfer"
		} else if !slices.Contains(cur.Regions, req.Region) {
			cur.Regions = append(cur.Regions, req.Region)
		}
		s.log.Info("image transferred", "image", im.ID, "name", im.Name, "region", req.Region, "action", a.ID, "status", a.Status)
		if err := s.st.save(s.cfg.StateDir); err != nil {
			s.log.Error("save state", "error", err)
		}
	}()
	writeOne(w, http.StatusCreated, "action", s.actionJSON(a))
	return nil
}

func (s *Server) getImageAction(w http.ResponseWriter, r *http.Request) error {
	aid, err := pathID(r, "action")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.findImage(r.PathValue("image"))
	a := s.st.Actions[aid]
	if im == nil || a == nil || a.ResourceType != "image" || a.ResourceID != im.ID {
		return notFound()
	}
	writeOne(w, http.StatusOK, "action", s.actionJSON(a))
	return nil
}
