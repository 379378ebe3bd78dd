package localdo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
)

// droplet is the server's record of a droplet.
type droplet struct {
	ID          int       `json:"id"`
	Name        string    `json:"name"`
	Region      string    `json:"region"`
	Size        string    `json:"size"`
	ImageID     int       `json:"imageId"`
	Status      string    `json:"status"` // new, active, off
	Locked      bool      `json:"locked"`
	Created     time.Time `json:"created"`
	Tags        []string  `json:"tags"`
	UserData    string    `json:"userData"`
	PublicKeys  []string  `json:"publicKeys"`
	PublicIP    string    `json:"publicIp"`
	PrivateIP   string    `json:"privateIp"`
	Monitoring  bool      `json:"monitoring"`
	SnapshotIDs []int     `json:"snapshotIds"`
	droplets.Instance
}

// image is a snapshot (a committed droplet) or one of the configured distribution images.
type image struct {
	ID           int       `json:"id"`
	Name         string    `json:"name"`
	Type         string    `json:"type"` // snapshot or base
	Distribution string    `json:"distribution"`
	Slug         string    `json:"slug,omitempty"`
	Public       bool      `json:"public"`
	Regions      []string  `json:"regions"`
	MinDiskSize  int       `json:"minDiskSize"`
	SizeGB       float64   `json:"sizeGigabytes"`
	Created      time.Time `json:"created"`
	Description  string    `json:"description,omitempty"`
	Tags         []string  `json:"tags"`
	Ref          string    `json:"ref"` // Docker image
	DropletID    int       `json:"dropletId,omitempty"`
}

type key struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"publicKey"`
}

type action struct {
	ID           int        `json:"id"`
	Status       string     `json:"status"` // in-progress, completed, errored
	Type         string     `json:"type"`
	StartedAt    time.Time  `json:"startedAt"`
	CompletedAt  *time.Time `json:"completedAt,omitempty"`
	ResourceID   int        `json:"resourceId"`
	ResourceType string     `json:"resourceType"`
	Region       string     `json:"region"`
	Error        string     `json:"error,omitempty"`
}

// store is everything the server knows; it is saved as JSON after every change so a
// restarted server (and `localdo down`) sees the same droplets and snapshots.
type store struct {
	NextID   int              `json:"nextId"`
	Droplets map[int]*droplet `json:"droplets"`
	Images   map[int]*image   `json:"images"`
	Keys     map[int]*key     `json:"keys"`
	Actions  map[int]*action  `json:"actions"`
	Tags     map[string]bool  `json:"tags"`
}

func newStore() *store {
	return &store{
		NextID:   1000,
		Droplets: map[int]*droplet{},
		Images:   map[int]*image{},
		Keys:     map[int]*key{},
		Actions:  map[int]*action{},
		Tags:     map[string]bool{},
	}
}

func (s *store) id() int {
	s.NextID++
	return s.NextID
}

const stateFile = "state.json"

func loadStore(dir string) (*store, error) {
	s := newStore()
	if dir == "" {
		return s, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read local DigitalOcean state: %w", err)
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("read local DigitalOcean state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return s, nil
}

// save writes the store atomically (temp file, fsync, rename).
func (s *store) save(dir string) error {
	if dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save local DigitalOcean state: %w", err)
	}
	f, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("save local DigitalOcean state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600) // user_data may carry tokens
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, stateFile))
	}
	if err != nil {
		return fmt.Errorf("save local DigitalOcean state: %w", err)
	}
	return nil
}
