package localdo

import (
	"fmt"
	"time"
)

// Snapshot describes a snapshot for AddSnapshot.
type Snapshot struct {
	// ID is the snapshot's id; 0 takes the next free one.
	ID      int
	Name    string
	Created time.Time
	SizeGB  float64
	// Regions default to nyc3.
	Regions []string
	Tags    []string
}

// AddSnapshot puts a snapshot into the account as if a droplet since deleted had been
// snapshotted at sn.Created. DigitalOcean has no request for that, and tests of listing
// and retention need snapshots of many ages with known ids. It returns the id.
func (s *Server) AddSnapshot(sn Snapshot) (int, error) {
	if sn.Name == "" {
		return 0, fmt.Errorf("add snapshot: no name")
	}
	if sn.Regions == nil {
		sn.Regions = []string{"nyc3"}
	}
	for _, r := range sn.Regions {
		if _, ok := findRegion(r); !ok {
			return 0, fmt.Errorf("add snapshot %s: unknown region %q", sn.Name, r)
		}
	}
	for _, t := range sn.Tags {
		if !tagRE.MatchString(t) {
			return 0, fmt.Errorf("add snapshot %s: bad tag %q", sn.Name, t)
		}
	}
	if sn.Created.IsZero() {
		sn.Created = s.cfg.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := sn.ID
	if id == 0 {
		id = s.st.id()
	} else {
		if s.imageByID(id) != nil || s.st.Droplets[id] != nil || s.st.Keys[id] != nil || s.st.Actions[id] != nil {
			return 0, fmt.Errorf("add snapshot %s: id %d is taken", sn.Name, id)
		}
		s.st.NextID = max(s.st.NextID, id)
	}
	s.st.Images[id] = &image{
		ID: id, Name: sn.Name, Type: "snapshot", Distribution: "Debian", Regions: append([]string{}, sn.Regions...),
		MinDiskSize: 25, SizeGB: sn.SizeGB, Created: sn.Created, Tags: append([]string{}, sn.Tags...),
		// The runtime's name for this snapshot's image, which the runtime may lack: a
		// droplet created from it then fails the way a missing Docker image does.
		Ref: s.cfg.Runtime.SnapshotRef(id),
	}
	s.addTags(sn.Tags)
	return id, s.st.save(s.cfg.StateDir)
}
