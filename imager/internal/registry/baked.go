package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"gopkg.in/yaml.v3"

	"github.com/codelab-app/infra/internal/baked"
	"github.com/codelab-app/infra/roles"
)

// BakedFile is where a service image says which images are baked in; the agent's
// pull-images step reads it (package baked defines the format for both).
const BakedFile = baked.File

// BakedSchemaVersion versions Baked.
const BakedSchemaVersion = baked.SchemaVersion

// Baked is the content of BakedFile.
type Baked = baked.Baked

// RoleRefs renders the role's compose.yaml for registry and version with the roles
// package's templates (the agent renders the same file from user_data) and returns its
// services' images, sorted and distinct.
func RoleRefs(role, registry, version string) ([]string, error) {
	fsys, err := roles.FS(role)
	if err != nil {
		return nil, err
	}
	src, err := fs.ReadFile(fsys, "compose.yaml")
	if err != nil {
		return nil, fmt.Errorf("read role %s compose.yaml: %w", role, err)
	}
	t, err := roles.Parse("compose.yaml", src)
	if err != nil {
		return nil, fmt.Errorf("parse role %s compose.yaml: %w", role, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, roles.Data{Role: role, Registry: registry, Version: version}); err != nil {
		return nil, fmt.Errorf("render role %s compose.yaml: %w", role, err)
	}
	var doc struct {
		Services map[string]struct {
			Image string `yaml:"image"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(out.Bytes(), &doc); err != nil {
		return nil, fmt.Errorf("read role %s compose.yaml: %w", role, err)
	}
	seen := map[string]bool{}
	var refs []string
	for svc, s := range doc.Services {
		if s.Image == "" {
			return nil, fmt.Errorf("role %s compose.yaml: service %s has no image", role, svc)
		}
		if !seen[s.Image] {
			seen[s.Image] = true
			refs = append(refs, s.Image)
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("role %s compose.yaml has no services", role)
	}
	sort.Strings(refs)
	return refs, nil
}

// DockerConfig is a Docker client config.json that logs in to registryPath's host with
// token (user name and password alike, as the DigitalOcean registry takes it); with no
// token it holds no credentials.
func DockerConfig(registryPath, token string) ([]byte, error) {
	type auth struct {
		Auth string `json:"auth"`
	}
	cfg := struct {
		Auths map[string]auth `json:"auths"`
	}{Auths: map[string]auth{}}
	if token != "" {
		reg, err := name.NewRegistry(strings.SplitN(registryPath, "/", 2)[0], name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("registry %s: %w", registryPath, err)
		}
		cfg.Auths[reg.RegistryStr()] = auth{Auth: base64.StdEncoding.EncodeToString([]byte(token + ":" + token))}
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
