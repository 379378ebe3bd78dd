// Package roles embeds what makes a droplet an api, web, landing, sites or
// neo4j droplet. Each role is a folder with a fixed shape:
//
//	<role>/compose.yaml          the role's Compose project
//	<role>/consul/*.hcl          Consul service definitions and checks
//	<role>/templates/*.ctmpl     consul-template templates
//	<role>/required              KV keys the role cannot start without
//
// Every file is a Go text/template with [[ ]] delimiters (so consul-template's
// {{ }} passes through untouched), executed by the agent with Data. The
// partials in settings.tmpl (settings: a role's KV keys as env-file lines)
// are available to every file; Parse adds them.
package roles

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

//go:embed all:api all:web all:landing all:sites all:neo4j
var files embed.FS

//go:embed settings.tmpl
var partials string

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
	// HealthStartInterval says the droplet's Docker Engine takes a
	// healthcheck's start_interval (Engine 25 and later, API 1.44).
	// Compose refuses a file that sets it on an older Engine ("can't set
	// healthcheck.start_interval"), so the role files set it only then.
	HealthStartInterval bool
}

// Delims are the template delimiters of role files.
const (
	LeftDelim  = "[["
	RightDelim = "]]"
)

// Parse parses a role file's source, named name, with the role-file
// delimiters, missing keys as errors, and the shared partials.
func Parse(name string, src []byte) (*template.Template, error) {
	t := template.New(name).Delims(LeftDelim, RightDelim).Option("missingkey=error")
	if _, err := t.New("settings.tmpl").Parse(partials); err != nil {
		return nil, fmt.Errorf("parse role partials: %w", err)
	}
	if _, err := t.Parse(string(src)); err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	return t, nil
}

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

var keyName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Required lists the keys, relative to Consul KV codelab/<env>/<role>/,
// that must exist before the role starts (the role's required file).
// Until they do, consul-template does not render the role's env file (its
// template blocks on them), and the agent waits and reports which key is
// missing instead of starting a container with an empty setting.
func Required(role string) ([]string, error) {
	fsys, err := FS(role)
	if err != nil {
		return nil, err
	}
	b, err := fs.ReadFile(fsys, "required")
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", role, err)
	}
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !keyName.MatchString(line) {
			return nil, fmt.Errorf("role %s: required line %d: %q is not an environment variable name", role, n, line)
		}
		keys = append(keys, line)
	}
	return keys, nil
}

// RequiredKVPath is the full Consul KV path of a required key.
func RequiredKVPath(env, role, key string) string {
	return "codelab/" + env + "/" + role + "/" + key
}

// serviceName is a service definition's own name: the first `name =` at
// the service block's indentation (a check's name is indented further).
var serviceName = regexp.MustCompile(`(?m)^  name\s*=\s*"([^"]+)"`)

// Services lists the Consul services a role's droplets register (the names
// in consul/*.hcl): its ACL policy lets it write these and no others.
func Services(role string) ([]string, error) {
	fsys, err := FS(role)
	if err != nil {
		return nil, err
	}
	files, err := fs.Glob(fsys, "consul/*.hcl")
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", role, err)
	}
	var out []string
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
		m := serviceName.FindSubmatch(b)
		if m == nil {
			return nil, fmt.Errorf("role %s: %s names no service", role, f)
		}
		out = append(out, string(m[1]))
	}
	slices.Sort(out)
	return out, nil
}
