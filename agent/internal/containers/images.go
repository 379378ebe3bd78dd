// Package containers is everything Docker: it pulls a role's images (Docker
// Engine API, concurrently, with registry credentials, retries and
// progress), runs its Compose project (the docker compose plugin, the same
// command consul-template runs), reports on both for status, and drives
// one service's container and throwaway containers next to it (Engine: the
// backup's neo4j-admin runs and the monitor's probes).
package containers

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/registry"
	"gopkg.in/yaml.v3"
)

// ComposeImages lists the distinct images of a Compose file's services, in
// a stable order.
func ComposeImages(compose []byte) ([]string, error) {
	var doc struct {
		Services map[string]struct {
			Image string `yaml:"image"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(compose, &doc); err != nil {
		return nil, fmt.Errorf("read compose file: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for name, s := range doc.Services {
		if s.Image == "" {
			return nil, fmt.Errorf("compose service %s has no image (builds are not run on droplets)", name)
		}
		if !seen[s.Image] {
			seen[s.Image] = true
			out = append(out, s.Image)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("compose file has no services")
	}
	sort.Strings(out)
	return out, nil
}

// RegistryHost is the registry part of an image reference, as Docker
// decides it: docker.io for Docker Hub ("neo4j", "library/neo4j",
// "index.docker.io/library/neo4j"); "" for a reference that does not parse.
func RegistryHost(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	return reference.Domain(n)
}

// Repository is ref's repository, fully qualified and without tag or
// digest: "neo4j:5" and "docker.io/library/neo4j@sha256:..." are both
// "docker.io/library/neo4j". A reference that does not parse is returned
// as it is.
func Repository(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return n.Name()
}

// Credentials are registry credentials for one registry host.
// DigitalOcean Container Registry takes an API token as both user name and
// password.
type Credentials struct {
	Host  string
	Token string // secret: never logged
}

// EncodedAuth is the X-Registry-Auth value for the Engine API, or "" when
// there are no credentials for ref's registry.
func (c Credentials) EncodedAuth(ref string) string {
	if c.Token == "" || c.Host == "" || RegistryHost(ref) != c.Host {
		return ""
	}
	s, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: c.Token, Password: c.Token, ServerAddress: c.Host})
	if err != nil {
		return ""
	}
	return s
}

// DockerConfig is /root/.docker/config.json holding the credentials, so
// that `docker compose` (and an operator's `docker pull`) can use them.
func (c Credentials) DockerConfig() ([]byte, error) {
	cfg := map[string]any{"auths": map[string]any{
		c.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c.Token + ":" + c.Token))},
	}}
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
