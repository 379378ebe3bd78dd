package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// ConfigFile holds the backup and monitor settings. On neo4j droplets
// consul-template renders it from roles/neo4j/templates/backup.json.ctmpl
// (defaults there, overrides in Consul KV codelab/<env>/backup/).
const ConfigFile = "/root/docker/neo4j/backup.json"

// Editions.
const (
	Community  = "community"
	Enterprise = "enterprise"
)

// Config is ConfigFile. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Edition is community (offline dump within Window, database stopped)
	// or enterprise (online backup).
	Edition string `json:"edition"`
	// Image is the Neo4j image whose neo4j-admin runs the dumps; the same
	// image the Compose project runs.
	Image string `json:"image"`
	// Volume is the named volume that holds /data.
	Volume string `json:"volume"`
	// Project and Service find the database container by its Compose labels.
	Project string `json:"project"`
	Service string `json:"service"`
	// Databases are dumped and restored in this order.
	Databases []string `json:"databases"`
	// Dir is the local folder where dumps wait for their upload.
	Dir string `json:"dir"`
	// Window is when a Community backup may stop the database, "HH:MM-HH:MM"
	// in UTC; empty means any time. `backup run --ignore-window` overrides it.
	Window string `json:"window"`
	// KeepDaily and KeepWeekly: retention, see Retain.
	KeepDaily  int `json:"keepDaily"`
	KeepWeekly int `json:"keepWeekly"`
	// MaxAge is how old the newest verified backup may get before the
	// monitor's Consul check turns critical.
	MaxAge Duration `json:"maxAge"`
	// SecretFile holds the Spaces endpoint, bucket, region and keys (0600).
	SecretFile string `json:"secretFile"`
	// Prefix is the key prefix of this environment's backups in the bucket.
	Prefix string `json:"prefix"`
	// MinFreeBytes: a run refuses to start when the backup folder's
	// filesystem has less free space.
	MinFreeBytes int64 `json:"minFreeBytes"`
	// AdminUser, when set, is the uid[:gid] neo4j-admin's container runs as.
	AdminUser string `json:"adminUser,omitempty"`
	// BackupFrom is the Enterprise backup server address (host:port).
	BackupFrom string `json:"backupFrom,omitempty"`
	// StopTimeout is how long the database gets to shut down cleanly.
	StopTimeout Duration `json:"stopTimeout"`
	// StartTimeout is how long it may take to be healthy again.
	StartTimeout Duration `json:"startTimeout"`

	Monitor MonitorConfig `json:"monitor"`
}

// MonitorConfig is the monitor's part of ConfigFile.
type MonitorConfig struct {
	// Listen is the /metrics address, the droplet's VPC address.
	Listen string `json:"listen"`
	// BoltAddr and HTTPURL are probed for reachability.
	BoltAddr string `json:"boltAddr"`
	HTTPURL  string `json:"httpUrl"`
	// ConsulAddr is the local Consul agent's HTTP API.
	ConsulAddr string `json:"consulAddr"`
	// KVPrefix is the role's KV folder, RenderedFile what consul-template
	// renders from it: their difference in time is the render lag.
	KVPrefix     string `json:"kvPrefix"`
	RenderedFile string `json:"renderedFile"`
	// StorePath is where the data volume is on the host (its size is the
	// store size); empty asks Docker.
	StorePath string `json:"storePath,omitempty"`
}

// Duration is a time.Duration written as "26h" in JSON.
type Duration struct{ time.Duration }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"26h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// DefaultConfig is production's defaults.
func DefaultConfig() Config {
	return Config{
		Edition:      Community,
		Volume:       "neo4j-data",
		Project:      "neo4j",
		Service:      "neo4j",
		Databases:    []string{"system", "neo4j"},
		Dir:          "/var/backups/neo4j",
		Window:       "02:00-05:00",
		KeepDaily:    7,
		KeepWeekly:   4,
		MaxAge:       Duration{26 * time.Hour},
		SecretFile:   "/root/docker/neo4j/spaces.json",
		Prefix:       "neo4j",
		MinFreeBytes: 64 << 20,
		StopTimeout:  Duration{2 * time.Minute},
		StartTimeout: Duration{5 * time.Minute},
		Monitor: MonitorConfig{
			Listen:     "127.0.0.1:9187",
			BoltAddr:   "127.0.0.1:7687",
			HTTPURL:    "http://127.0.0.1:7474/",
			ConsulAddr: "http://127.0.0.1:8500",
		},
	}
}

// LoadConfig reads ConfigFile below root over the defaults.
func LoadConfig(root fsutil.Root) (Config, error) {
	c := DefaultConfig()
	b, err := root.ReadFile(ConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("no backup settings: %s is missing (it is rendered on neo4j droplets)", ConfigFile)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read backup settings: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("parse %s: %w", ConfigFile, err)
	}
	return c, c.Validate()
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	if c.Edition != Community && c.Edition != Enterprise {
		errs = append(errs, fmt.Errorf("edition %q: want community or enterprise", c.Edition))
	}
	if c.Image == "" {
		errs = append(errs, errors.New("image is empty"))
	}
	if len(c.Databases) == 0 {
		errs = append(errs, errors.New("no databases"))
	}
	if c.KeepDaily < 1 {
		errs = append(errs, fmt.Errorf("keepDaily %d: keep at least one", c.KeepDaily))
	}
	if c.KeepWeekly < 0 {
		errs = append(errs, fmt.Errorf("keepWeekly %d is negative", c.KeepWeekly))
	}
	if _, _, err := parseWindow(c.Window); err != nil {
		errs = append(errs, err)
	}
	if c.Edition == Enterprise && c.BackupFrom == "" {
		errs = append(errs, errors.New("enterprise backups need backupFrom (host:port)"))
	}
	if strings.Trim(c.Prefix, "/") == "" {
		errs = append(errs, errors.New("prefix is empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("backup settings %s: %w", ConfigFile, err)
	}
	return nil
}

// parseWindow reads "HH:MM-HH:MM" as minutes since midnight; empty is
// the whole day.
func parseWindow(w string) (from, to int, err error) {
	if w == "" {
		return 0, 24 * 60, nil
	}
	a, b, ok := strings.Cut(w, "-")
	if !ok {
		return 0, 0, fmt.Errorf("window %q: want HH:MM-HH:MM (UTC)", w)
	}
	pa, err1 := time.Parse("15:04", strings.TrimSpace(a))
	pb, err2 := time.Parse("15:04", strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("window %q: want HH:MM-HH:MM (UTC)", w)
	}
	return pa.Hour()*60 + pa.Minute(), pb.Hour()*60 + pb.Minute(), nil
}

// InWindow reports whether t (in UTC) is inside the window. A window may
// wrap midnight ("23:00-02:00").
func (c Config) InWindow(t time.Time) bool {
	from, to, err := parseWindow(c.Window)
	if err != nil {
		return false
	}
	t = t.UTC()
	m := t.Hour()*60 + t.Minute()
	if from <= to {
		return m >= from && m < to
	}
	return m >= from || m < to
}
