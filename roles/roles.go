// Package roles embeds what makes a droplet an api, web, landing, sites or
// neo4j droplet. Each role is a folder with a fixed shape:
//
//	<role>/compose.yaml          the role's Compose project
//	<role>/consul/*.hcl          Consul service definitions and checks
//	<role>/templates/*.ctmpl     consul-template templates
//
// Every file is a Go text/template with [[ ]] delimiters (so consul-template's
// {{ }} passes through untouched), executed by the agent with Data.
package roles

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

//go:embed all:api all:web all:landing all:sites all:neo4j
var files embed.FS

// Names lists the roles.
var Names = []string{"api", "web", "landing", "sites", "neo4j"}

// Data is what role files may refer to.
type Data struct {
	Role       string
	Env        string
	Registry   string
	Version    string
	Datacenter string
	Hostname   string
	PrivateIP  string
}

// Delims are the template delimiters of role files.
const (
	LeftDelim  = "[["
	RightDelim = "]]"
)

// FS returns the role's folder.
func FS(role string) (fs.FS, error) {
	if !slices.Contains(Names, role) {
		return nil, fmt.Errorf("unknown role %q; roles are %s", role, strings.Join(Names, ", "))
	}
	sub, err := fs.Sub(files, role)
	if err != nil {
		return nil, fmt.Errorf("open role %s: %w", role, err)
	}
	return sub, nil
}
