package localdo

import (
	"net/http"
	"strconv"
	"time"
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

func (s *Server) imageJSON(im *image) map[string]any {
	tags := im.Tags
	if tags == nil {
		tags = []string{}
	}
	out := map[string]any{
		"id": im.ID, "name": im.Name, "type": im.Type, "distribution": im.Distribution,
		"slug": nil, "public": im.Public, "regions": im.Regions, "min_disk_size": im.MinDiskSize,
		"size_gigabytes": im.SizeGB, "created_at": im.Created.UTC().Format(time.RFC3339),
		"description": im.Description, "tags": tags, "status": "available", "error_message": "",
	}
	if im.Slug != "" {
		out["slug"] = im.Slug
	}
	return out
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
	var out []map[string]any
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
	return writePage(w, r, "images", out)
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
	writeJSON(w, http.StatusOK, map[string]any{"image": s.imageJSON(im)})
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
	writeJSON(w, http.StatusOK, map[string]any{"image": s.imageJSON(im)})
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
func (s *Server) snapshotJSON(im *image) map[string]any {
	return map[string]any{
		"id": strconv.Itoa(im.ID), "name": im.Name, "resource_id": strconv.Itoa(im.DropletID),
		"resource_type": "droplet", "regions": im.Regions, "min_disk_size": im.MinDiskSize,
		"size_gigabytes": im.SizeGB, "created_at": im.Created.UTC().Format(time.RFC3339), "tags": im.Tags,
	}
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "resource_type"); err != nil {
		return err
	}
	switch r.URL.Query().Get("resource_type") {
	case "", "droplet":
	case "volume":
		return writePage(w, r, "snapshots", []map[string]any{})
	default:
		return unprocessable("resource_type must be droplet or volume")
	}
	s.mu.Lock()
	var out []map[string]any
	for _, id := range sortedKeys(s.st.Images) {
		out = append(out, s.snapshotJSON(s.st.Images[id]))
	}
	s.mu.Unlock()
	return writePage(w, r, "snapshots", out)
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
	writeJSON(w, http.StatusOK, map[string]any{"snapshot": s.snapshotJSON(im)})
	return nil
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) error {
	return s.removeSnapshot(w, r, r.PathValue("id"))
}
