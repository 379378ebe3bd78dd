// Package baked is the record a per-service image keeps of the role's
// images baked into it, /etc/codelab/baked-images.json: the imager writes
// it at build time, the agent's pull-images step reads it at boot. One
// definition serves both, so the two cannot drift apart.
package baked

import (
	"encoding/json"
	"errors"
	"fmt"
)

// File is where a service image keeps the record.
const File = "/etc/codelab/baked-images.json"

// SchemaVersion is the newest format; Parse reads 1 to SchemaVersion.
const SchemaVersion = 1

// Baked is the record: the role, the user_data registry= and version= the
// images were resolved for, and each image of the role's rendered
// compose.yaml with its repository digest.
type Baked struct {
	SchemaVersion int     `json:"schemaVersion"`
	Role          string  `json:"role"`
	Version       string  `json:"version"`
	Registry      string  `json:"registry"`
	Images        []Image `json:"images"`
}

// Image is one baked image: the reference exactly as the role's rendered
// compose.yaml names it, and the repository (manifest) digest the registry
// returned for its tag.
type Image struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// JSON is the file's bytes: indented JSON and a final newline.
func (b Baked) JSON() ([]byte, error) {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", File, err)
	}
	return append(out, '\n'), nil
}

// Digest returns the baked digest of ref, as the Compose file names it.
func (b Baked) Digest(ref string) (string, bool) {
	for _, im := range b.Images {
		if im.Ref == ref {
			return im.Digest, true
		}
	}
	return "", false
}

// Error says why a record cannot be used.
type Error struct {
	Field string // the bad part: "json", "schemaVersion", "images[1].digest"...
	Err   error
}

func (e *Error) Error() string {
	if e.Field == "json" {
		return "does not parse: " + e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}
func (e *Error) Unwrap() error { return e.Err }

// Parse reads a record. One that does not parse, has a schemaVersion this
// code does not read or lacks a field is an *Error naming the bad part.
func Parse(b []byte) (Baked, error) {
	var v Baked
	if err := json.Unmarshal(b, &v); err != nil {
		return Baked{}, &Error{Field: "json", Err: err}
	}
	if v.SchemaVersion < 1 || v.SchemaVersion > SchemaVersion {
		return Baked{}, &Error{Field: "schemaVersion", Err: fmt.Errorf("%d; this agent reads 1 to %d", v.SchemaVersion, SchemaVersion)}
	}
	for _, f := range []struct{ name, v string }{{"role", v.Role}, {"version", v.Version}, {"registry", v.Registry}} {
		if f.v == "" {
			return Baked{}, &Error{Field: f.name, Err: errors.New("missing")}
		}
	}
	if len(v.Images) == 0 {
		return Baked{}, &Error{Field: "images", Err: errors.New("empty")}
	}
	for i, im := range v.Images {
		if im.Ref == "" {
			return Baked{}, &Error{Field: fmt.Sprintf("images[%d].ref", i), Err: errors.New("missing")}
		}
		if !ValidDigest(im.Digest) {
			return Baked{}, &Error{Field: fmt.Sprintf("images[%d].digest", i), Err: fmt.Errorf("%q is not a sha256:<64 hex> digest", im.Digest)}
		}
	}
	return v, nil
}

// ValidDigest reports whether d is sha256:<64 lower-case hex>.
func ValidDigest(d string) bool {
	const prefix = "sha256:"
	if len(d) != len(prefix)+64 || d[:len(prefix)] != prefix {
		return false
	}
	for _, c := range d[len(prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
