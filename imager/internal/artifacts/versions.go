// Package artifacts knows the pinned versions and SHA-256 checksums of everything baked
// into the images (read from the one versions file, packer/versions.pkrvars.hcl), fetches
// each artifact once into a local cache, verifies it, and stages the files the Packer
// file provisioner uploads.
package artifacts

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// VersionsFile is the versions file's path relative to the repository root.
const VersionsFile = "packer/versions.pkrvars.hcl"

// Versions holds the variables of the versions file.
type Versions map[string]string

var assignment = regexp.MustCompile(`^([a-z][a-z0-9_]*)\s*=\s*"([^"\\]*)"\s*(#.*)?$`)

// ParseVersions reads the restricted HCL subset the versions file is written in: blank
// lines, '#' or '//' comments and `name = "value"` lines. Anything else is an error, so
// the imager never silently disagrees with Packer about a value.
func ParseVersions(text string) (Versions, error) {
	v := Versions{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "//") {
			continue
		}
		m := assignment.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d: want name = \"value\", got %q", n, line)
		}
		if _, dup := v[m[1]]; dup {
			return nil, fmt.Errorf("line %d: %s is set twice", n, m[1])
		}
		v[m[1]] = m[2]
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return v, nil
}

// LoadVersions reads and parses the versions file at path.
func LoadVersions(path string) (Versions, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read versions file: %w", err)
	}
	v, err := ParseVersions(string(b))
	if err != nil {
		return nil, fmt.Errorf("parse versions file %s: %w", path, err)
	}
	return v, nil
}
