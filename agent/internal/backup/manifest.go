package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
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

func decodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("parse manifest: %w", err)
	}
	if m.ID == "" || len(m.Files) == 0 {
		return Manifest{}, fmt.Errorf("manifest has no id or no files")
	}
	return m, nil
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
