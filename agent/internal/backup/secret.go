package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// Spaces is the secret file: where backups go and the keys to get there.
// It is read from a 0600 file and never logged (String redacts).
type Spaces struct {
	// Endpoint is the S3 API URL, https://fra1.digitaloceanspaces.com.
	Endpoint  string `json:"endpoint"`
	Bucket    string `json:"bucket"`
	Region    string `json:"region"`
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
	// ManifestKey signs every manifest (HMAC-SHA256), so that a restore
	// can tell a backup this cluster made from one put in the bucket by
	// someone else. At least 32 characters.
	ManifestKey string `json:"manifestKey"`
}

// ManifestKeyKV is the Consul KV key that holds the manifest key.
const ManifestKeyKV = "codelab/<env>/backup/manifest_key"

// minManifestKey is the shortest manifest key accepted.
const minManifestKey = 32

// ErrNoManifestKey: the secret file has no manifest key.
var ErrNoManifestKey = errors.New("no manifest key: set Consul KV " + ManifestKeyKV + " (at least 32 characters, e.g. `openssl rand -hex 32`); consul-template renders it into the backup secret file")

// String never shows the keys.
func (s Spaces) String() string {
	return fmt.Sprintf("Spaces{endpoint=%s bucket=%s region=%s keys=REDACTED}", s.Endpoint, s.Bucket, s.Region)
}

// GoString keeps %#v from printing the keys as well.
func (s Spaces) GoString() string { return s.String() }

// LoadSpaces reads the secret file below root. It refuses a file that
// anyone but its owner may read. The manifest key may be missing (list and
// restore --trust-unsigned work without it); a backup run refuses to start
// without one.
func LoadSpaces(root fsutil.Root, path string) (Spaces, error) {
	p := root.Path(path)
	st, err := os.Stat(p)
	if err != nil {
		return Spaces{}, fmt.Errorf("backup secret file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Spaces{}, fmt.Errorf("backup secret file %s has mode %04o: it must be 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Spaces{}, fmt.Errorf("backup secret file: %w", err)
	}
	var s Spaces
	if err := json.Unmarshal(b, &s); err != nil {
		// The JSON error could quote the file; do not pass it on.
		return Spaces{}, fmt.Errorf("backup secret file %s is not valid JSON", path)
	}
	var errs []error
	u, err := url.Parse(s.Endpoint)
	if s.Endpoint == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("endpoint %q: want https://host[:port]", s.Endpoint))
	}
	for name, v := range map[string]string{"bucket": s.Bucket, "region": s.Region, "accessKey": s.AccessKey, "secretKey": s.SecretKey} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	if n := len(s.ManifestKey); n > 0 && n < minManifestKey {
		errs = append(errs, fmt.Errorf("manifestKey (%s) has %d characters: want at least %d", ManifestKeyKV, n, minManifestKey))
	}
	if err := errors.Join(errs...); err != nil {
		return Spaces{}, fmt.Errorf("backup secret file %s: %w", path, err)
	}
	return s, nil
}
