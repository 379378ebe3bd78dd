package backup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ManifestName is the manifest's object name inside a backup.
const ManifestName = "manifest.json"

// IDFormat is a backup id: the UTC time the run started.
const IDFormat = "20060102T150405Z"

// Manifest describes one backup. It is uploaded last: a backup without a
// manifest is incomplete and never restored.
type Manifest struct {
	SchemaVersion int       `json:"schemaVersion"`
	ID            string    `json:"id"`
	CreatedAt     time.Time `json:"createdAt"`
	Edition       string    `json:"edition"`
	Image         string    `json:"image"`
	Databases     []string  `json:"databases"`
	Files         []File    `json:"files"`
	DowntimeMS    int64     `json:"downtimeMs"`
	// Verified: every file passed neo4j-admin database check before upload.
	Verified bool `json:"verified"`
	// HMAC is the HMAC-SHA256, in hex, of the manifest's JSON encoding
	// with HMAC empty, keyed with the manifest key (Spaces.ManifestKey).
	HMAC string `json:"hmac,omitempty"`
}

// SignatureError is a manifest whose HMAC is missing or does not match,
// or that cannot be checked because no manifest key is configured.
type SignatureError struct {
	Key    string // the manifest's object key
	Reason string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("manifest %s: %s", e.Key, e.Reason)
}

// mac computes m's HMAC with key.
func (m Manifest) mac(key string) ([]byte, error) {
	m.HMAC = ""
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	h := hmac.New(sha256.New, []byte(key))
	h.Write(b)
	return h.Sum(nil), nil
}

// sign sets m's HMAC.
func (m *Manifest) sign(key string) error {
	if key == "" {
		return ErrNoManifestKey
	}
	sum, err := m.mac(key)
	m.HMAC = hex.EncodeToString(sum)
	return err
}

// verify checks m's HMAC with key; objectKey names the manifest in errors.
func (m Manifest) verify(key, objectKey string) error {
	switch {
	case key == "":
		return &SignatureError{Key: objectKey, Reason: "cannot check its HMAC: " + ErrNoManifestKey.Error()}
	case m.HMAC == "":
		return &SignatureError{Key: objectKey, Reason: "unsigned (no hmac): it was not made by a backup run with this cluster's manifest key"}
	}
	want, err := m.mac(key)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(m.HMAC)
	if err != nil || !hmac.Equal(got, want) {
		return &SignatureError{Key: objectKey, Reason: "HMAC does not match: the manifest was changed, or signed with another key"}
	}
	return nil
}

// File is one file of a backup with its SHA-256.
type File struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"sizeBytes"`
	SHA256    string `json:"sha256"`
}

// Size is the sum of the files.
func (m Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.SizeBytes
	}
	return n
}

func (m Manifest) encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// ManifestSchemaVersion is the newest manifest format this agent reads.
const ManifestSchemaVersion = 1

// ManifestError says what is wrong with a backup's manifest: Field names
// the bad part ("files[2].name", "databases[0]", "schemaVersion").
type ManifestError struct {
	Key   string // the manifest's object key
	Field string
	Err   error
}

func (e *ManifestError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("manifest %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("manifest %s: %s: %v", e.Key, e.Field, e.Err)
}

func (e *ManifestError) Unwrap() error { return e.Err }

// decodeManifest parses and validates the manifest at key: everything a
// restore takes from it (file names, databases, edition) must be what
// the agent itself would write, since the bucket is not trusted.
func decodeManifest(key string, b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, &ManifestError{Key: key, Err: fmt.Errorf("not valid JSON: %w", err)}
	}
	if m.SchemaVersion < 1 || m.SchemaVersion > ManifestSchemaVersion {
		return Manifest{}, &ManifestError{Key: key, Field: "schemaVersion", Err: fmt.Errorf("%d: this agent reads 1 to %d", m.SchemaVersion, ManifestSchemaVersion)}
	}
	if err := m.validate(); err != nil {
		err.Key = key
		return Manifest{}, err
	}
	return m, nil
}

// validate checks every field a restore uses.
func (m Manifest) validate() *ManifestError {
	bad := func(field string, format string, a ...any) *ManifestError {
		return &ManifestError{Field: field, Err: fmt.Errorf(format, a...)}
	}
	if _, err := time.Parse(IDFormat, m.ID); err != nil {
		return bad("id", "%q: want a backup id like 20260102T030405Z", m.ID)
	}
	if m.Edition != Community && m.Edition != Enterprise {
		return bad("edition", "%q: want community or enterprise", m.Edition)
	}
	if len(m.Databases) == 0 {
		return bad("databases", "empty")
	}
	dbs := map[string]bool{}
	for i, db := range m.Databases {
		if err := ValidDatabaseName(db); err != nil {
			return bad(fmt.Sprintf("databases[%d]", i), "%w", err)
		}
		if dbs[db] {
			return bad(fmt.Sprintf("databases[%d]", i), "%q is listed twice", db)
		}
		dbs[db] = true
	}
	if len(m.Files) == 0 {
		return bad("files", "empty")
	}
	names := map[string]bool{}
	for i, f := range m.Files {
		if err := ValidFileName(f.Name); err != nil {
			return bad(fmt.Sprintf("files[%d].name", i), "%w", err)
		}
		if names[f.Name] || f.Name == ManifestName {
			return bad(fmt.Sprintf("files[%d].name", i), "%q is listed twice", f.Name)
		}
		names[f.Name] = true
		if f.SizeBytes < 0 {
			return bad(fmt.Sprintf("files[%d].sizeBytes", i), "%d is negative", f.SizeBytes)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return bad(fmt.Sprintf("files[%d].sha256", i), "%q: want 64 hex digits", f.SHA256)
		}
	}
	return nil
}

// ValidFileName accepts a plain file name: no folder, not "." or "..",
// not hidden, no control character.
func ValidFileName(name string) error {
	switch {
	case name == "":
		return errors.New("empty file name")
	case len(name) > 255:
		return fmt.Errorf("file name of %d bytes is too long", len(name))
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%q is not a plain file name (it has a path separator)", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%q is not a plain file name (it starts with a dot)", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%q is not a plain file name (it has a control character)", name)
	case !filepath.IsLocal(name):
		return fmt.Errorf("%q is not a plain file name", name)
	}
	return nil
}

// ValidDatabaseName applies Neo4j's rules for database names: 3 to 63
// characters, lowercase ASCII letters, digits, dots and dashes, starting
// with a letter.
func ValidDatabaseName(name string) error {
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("database name %q: want 3 to 63 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || i > 0 && (r >= '0' && r <= '9' || r == '.' || r == '-')
		if !ok {
			return fmt.Errorf("database name %q: want lowercase letters, digits, dots and dashes, starting with a letter", name)
		}
	}
	return nil
}

// hashFile returns a file's size and SHA-256.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	return hashReader(f)
}

func hashReader(r io.Reader) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
