package localdo

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/digitalocean/godo"
)

// actionJSON is an action in the API's shape: "completed_at" is null while it runs.
func (s *Server) actionJSON(a *action) *godo.Action {
	out := &godo.Action{
		ID: a.ID, Status: a.Status, Type: a.Type,
		StartedAt:  &godo.Timestamp{Time: a.StartedAt.UTC().Truncate(time.Second)},
		ResourceID: a.ResourceID, ResourceType: a.ResourceType,
		Region: regionJSON(a.Region), RegionSlug: a.Region,
	}
	if a.CompletedAt != nil {
		out.CompletedAt = &godo.Timestamp{Time: a.CompletedAt.UTC().Truncate(time.Second)}
	}
	return out
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request) error {
	return s.writeActions(w, r, 0)
}

func (s *Server) listDropletActions(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	s.mu.Lock()
	ok := s.st.Droplets[id] != nil
	s.mu.Unlock()
	if !ok {
		return notFound()
	}
	return s.writeActions(w, r, id)
}

func (s *Server) writeActions(w http.ResponseWriter, r *http.Request, dropletID int) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	s.mu.Lock()
	var out []*godo.Action
	ids := sortedKeys(s.st.Actions)
	for i := len(ids) - 1; i >= 0; i-- { // newest first, like the API
		a := s.st.Actions[ids[i]]
		if dropletID == 0 || (a.ResourceType == "droplet" && a.ResourceID == dropletID) {
			out = append(out, s.actionJSON(a))
		}
	}
	s.mu.Unlock()
	return writePage(s, w, r, "actions", out)
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request) error {
	return s.writeAction(w, r, 0)
}

func (s *Server) getDropletAction(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	return s.writeAction(w, r, id)
}

func (s *Server) writeAction(w http.ResponseWriter, r *http.Request, dropletID int) error {
	aid, err := pathID(r, "action")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.Actions[aid]
	if a == nil || (dropletID != 0 && a.ResourceID != dropletID) {
		return notFound()
	}
	writeOne(w, http.StatusOK, "action", s.actionJSON(a))
	return nil
}

// dropletActionReq is what godo sends for the actions the local DigitalOcean implements.
type dropletActionReq struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

func (s *Server) createDropletAction(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req dropletActionReq
	if err := decode(r, &req); err != nil {
		return err
	}
	var work func(ctx context.Context, d droplet, a *action) error
	switch req.Type {
	case "shutdown":
		work = s.doShutdown(true)
	case "power_off":
		work = s.doShutdown(false)
	case "power_on":
		work = s.doPowerOn
	case "reboot":
		work = s.doRestart(true)
	case "power_cycle":
		work = s.doRestart(false)
	case "snapshot":
		if req.Name == "" {
			return unprocessable("name is required for a snapshot")
		}
		work = s.doSnapshot(req.Name)
	default:
		s.log.Error("UNIMPLEMENTED droplet action", "type", req.Type, "droplet", id)
		return unprocessable("The local DigitalOcean does not implement the droplet action %q.", req.Type)
	}
	if req.Name != "" && req.Type != "snapshot" {
		return unprocessable("name is only valid for a snapshot action")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.st.Droplets[id]
	if d == nil {
		return notFound()
	}
	if d.Locked {
		return unprocessable("Droplet already has a pending event.")
	}
	a := &action{ID: s.st.id(), Status: "in-progress", Type: req.Type, StartedAt: s.cfg.Now(),
		ResourceID: id, ResourceType: "droplet", Region: d.Region}
	s.st.Actions[a.ID] = a
	d.Locked = true
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	snap := *d
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		start := time.Now()
		err := work(s.ctx, snap, a)
		s.mu.Lock()
		defer s.mu.Unlock()
		t := s.cfg.Now()
		a.CompletedAt = &t
		a.Status = "completed"
		if err != nil {
			a.Status, a.Error = "errored", err.Error()
			s.log.Error("droplet action failed", "droplet", id, "action", a.Type, "id", a.ID, "error", err)
		} else {
			s.log.Info("droplet action completed", "droplet", id, "action", a.Type, "id", a.ID, "duration", time.Since(start).Round(time.Millisecond))
		}
		if d := s.st.Droplets[id]; d != nil {
			d.Locked = false
		}
		if err := s.st.save(s.cfg.StateDir); err != nil {
			s.log.Error("save state", "error", err)
		}
	}()
	writeOne(w, http.StatusCreated, "action", s.actionJSON(a))
	return nil
}

// setStatus changes a droplet's status if it still exists.
func (s *Server) setStatus(id int, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.st.Droplets[id]; d != nil {
		d.Status = status
	}
}

func (s *Server) doShutdown(graceful bool) func(ctx context.Context, d droplet, a *action) error {
	return func(ctx context.Context, d droplet, _ *action) error {
		if d.Status == "off" {
			return nil
		}
		if err := s.cfg.Runtime.Stop(ctx, d.ID, graceful, s.cfg.ShutdownTimeout); err != nil {
			return err
		}
		s.setStatus(d.ID, "off")
		return nil
	}
}

func (s *Server) doPowerOn(ctx context.Context, d droplet, _ *action) error {
	if d.Status == "active" {
		return nil
	}
	if err := s.cfg.Runtime.Start(ctx, d.ID, s.cfg.MetadataTarget); err != nil {
		return err
	}
	s.setStatus(d.ID, "active")
	return nil
}

func (s *Server) doRestart(graceful bool) func(ctx context.Context, d droplet, a *action) error {
	return func(ctx context.Context, d droplet, _ *action) error {
		if d.Status != "off" {
			if err := s.cfg.Runtime.Stop(ctx, d.ID, graceful, s.cfg.ShutdownTimeout); err != nil {
				return err
			}
			s.setStatus(d.ID, "off")
		}
		if err := s.cfg.Runtime.Start(ctx, d.ID, s.cfg.MetadataTarget); err != nil {
			return err
		}
		s.setStatus(d.ID, "active")
		return nil
	}
}

func (s *Server) doSnapshot(name string) func(ctx context.Context, d droplet, a *action) error {
	return func(ctx context.Context, d droplet, _ *action) error {
		s.mu.Lock()
		imageID := s.st.id()
		s.mu.Unlock()
		ref := s.cfg.Runtime.SnapshotRef(imageID)
		info, err := s.cfg.Runtime.Commit(ctx, d.ID, imageID, ref)
		if err != nil {
			return err
		}
		z, _ := findSize(d.Size)
		// The snapshot is the disk: root file system and Docker data.
		size := info.Size + info.DockerData.Bytes
		im := &image{
			ID: imageID, Name: name, Type: "snapshot", Distribution: s.distribution(d.ImageID),
			Regions: []string{d.Region}, MinDiskSize: z.disk,
			SizeGB:  math.Ceil(float64(size)/1e7) / 100, // GB with two decimals
			Created: s.cfg.Now(), Tags: []string{}, Ref: ref, DropletID: d.ID,
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.st.Images[im.ID] = im
		if dd := s.st.Droplets[d.ID]; dd != nil {
			dd.SnapshotIDs = append(dd.SnapshotIDs, im.ID)
		}
		s.log.Info("snapshot created", "droplet", d.ID, "image", im.ID, "name", name, "ref", ref, "size_gb", im.SizeGB,
			"docker_data_bytes", info.DockerData.Bytes, "docker_data_copy", info.DockerData.Duration.Round(time.Millisecond))
		return s.st.save(s.cfg.StateDir)
	}
}

// distribution is the distribution of an image id (for snapshots of snapshots).
func (s *Server) distribution(imageID int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if im := s.imageByID(imageID); im != nil {
		return im.Distribution
	}
	return fmt.Sprintf("unknown (image %d)", imageID)
}
