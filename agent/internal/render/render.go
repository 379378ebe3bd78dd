// Package render turns droplet metadata and a parsed user_data line into
// the full set of files the droplet runs on: Consul agent config, the role's
// Consul services, consul-template config and templates, and the role's
// Compose file. Render is pure; Apply validates and swaps them in.
package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/docker/docker/api/types/versions"

	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/internal/clustersec"
	"github.com/codelab-app/infra/roles"
)

// Paths on the droplet, as operators know them.
const (
	ConsulDir         = "/etc/consul.d"
	ConsulDataDir     = "/opt/consul"
	TemplateDir       = "/etc/consul-template"
	TemplateConfig    = TemplateDir + "/config.hcl"
	TemplateSourceDir = TemplateDir + "/templates"
	ComposeRoot       = "/root/docker"
	// NodeExporterDefaults is the environment file of Debian's
	// prometheus-node-exporter package (its unit runs the exporter with
	// $ARGS from it). The agent renders it so the exporter listens on the
	// VPC address only, never on the public interface.
	NodeExporterDefaults = "/etc/default/prometheus-node-exporter"
	// NodeExporterPort is the exporter's port.
	NodeExporterPort = 9100
)

const (
	// ConsulTLSDir holds the CA certificate and, on servers, the server's
	// RPC certificate and key. Consul reads only the files directly in
	// ConsulDir as config, so this folder is not config.
	ConsulTLSDir   = ConsulDir + "/tls"
	ConsulCAFile   = ConsulTLSDir + "/ca.pem"
	ConsulCertFile = ConsulTLSDir + "/server.pem"
	ConsulKeyFile  = ConsulTLSDir + "/server-key.pem"
	// ConsulACLFile holds the acl block: it carries tokens, so 0600.
	ConsulACLFile = ConsulDir + "/acl.hcl"
	// ConsulTokenFile is the droplet's own Consul ACL token (its role's),
	// 0600: the agent, status, the fleet view and backups read it; never a
	// command line.
	ConsulTokenFile = consul.TokenFile
)

// Consumer names the program that reads a file, and so validates it.
type Consumer string

const (
	ConsumerConsul         Consumer = "consul"
	ConsumerConsulTemplate Consumer = "consul-template"
	ConsumerCompose        Consumer = "compose"
	ConsumerNodeExporter   Consumer = "prometheus-node-exporter"
	// ConsumerAgent is codelab-agent itself (and its commands).
	ConsumerAgent Consumer = "codelab-agent"
)

// ConsulUser is the system user Consul runs as (systemd/consul.service).
const ConsulUser = "consul"

// Owner is the system user (and group of the same name) that owns the
// consumer's files: Consul runs as consul and reads every file of its
// folder as that user, so each of them, secrets included, is consul's
// (mode as rendered: secrets 0600). The other consumers run as root, the
// writer: "".
func (c Consumer) Owner() string {
	if c == ConsumerConsul {
		return ConsulUser
	}
	return ""
}

// File is one rendered file.
type File struct {
	Path     string // absolute path on the droplet
	Data     []byte
	Mode     fs.FileMode
	Consumer Consumer
}

// Ports are Consul's listeners. The zero value means Consul's defaults;
// tests that run several agents on one loopback set them apart.
type Ports struct {
	HTTP, DNS, SerfLAN, SerfWAN, Server, GRPC, GRPCTLS int
}

// Input is everything Render needs.
type Input struct {
	Meta metadata.Metadata
	User userdata.Config

	// Ports, when set, are written into the Consul config.
	Ports *Ports
	// EngineAPIVersion is the droplet's Docker Engine API version, as
	// dockerd reports it ("1.44" for Engine 25). Empty means unknown: the
	// Compose files then hold only what every Engine accepts.
	EngineAPIVersion string

	// ContentRoot is prefixed to the paths written inside files (Consul's
	// data_dir, template sources and destinations). Empty in production;
	// tests that run Consul and consul-template from the rendered files
	// point it at their temporary root.
	ContentRoot string
}

// ComposeFile is where the role's Compose project lives on the droplet.
func ComposeFile(role string) string { return path.Join(ComposeRoot, role, "compose.yaml") }

// ComposeLock is the flock(2) file that serialises every `docker compose up`
// of a role: consul-template's exec takes it through flock(1) and the agent's
// compose step takes the same lock, so the two never create the project's
// network or containers at the same time.
func ComposeLock(role string) string { return "/run/lock/codelab-compose-" + role + ".lock" }

// StartIntervalAPI is the first Engine API version (Docker Engine 25)
// that runs a healthcheck's start_interval; Compose refuses the setting
// on older Engines.
const StartIntervalAPI = "1.44"

// StartIntervalSupported reports whether an Engine of API version v takes
// start_interval; an unknown version ("") does not.
func StartIntervalSupported(v string) bool {
	return v != "" && versions.GreaterThanOrEqualTo(v, StartIntervalAPI)
}

// Render produces every file for the droplet. It fails when the droplet
// cannot run the role as asked (no VPC address, say).
func Render(in Input) ([]File, error) {
	ip, err := in.Meta.RequirePrivateIPv4()
	if err != nil {
		return nil, fmt.Errorf("render consul config: %w", err)
	}
	u := in.User
	data := roles.Data{
		Role:       u.Role,
		Env:        u.Env,
		Registry:   u.Registry,
		Version:    u.Version,
		Datacenter: u.Datacenter(in.Meta.Region),
		Hostname:   in.Meta.Hostname,
		PrivateIP:  ip,

		HealthStartInterval: StartIntervalSupported(in.EngineAPIVersion),
	}
	var files []File
	add := func(p string, b []byte, mode fs.FileMode, c Consumer) {
		files = append(files, File{Path: p, Data: b, Mode: mode, Consumer: c})
	}

	ca, err := u.ClusterCA()
	if err != nil {
		return nil, fmt.Errorf("render consul TLS: %w", err)
	}
	add(ConsulCAFile, ca.CertPEM(), 0o644, ConsumerConsul)
	if u.Consul == userdata.ConsulServer {
		// Deterministic: the same CA, datacenter, name and address give
		// the same bytes on every boot, so nothing restarts.
		srv, err := ca.ServerCert(data.Datacenter, in.Meta.Hostname, ip)
		if err != nil {
			return nil, fmt.Errorf("render consul TLS: %w", err)
		}
		add(ConsulCertFile, srv.CertPEM, 0o644, ConsumerConsul)
		add(ConsulKeyFile, srv.KeyPEM, 0o600, ConsumerConsul)
	}
	add(ConsulDir+"/consul.hcl", consulConfig(in, data), 0o640, ConsumerConsul)
	roleToken, err := u.RoleToken()
	if err != nil {
		return nil, fmt.Errorf("render consul ACL: %w", err)
	}
	mgmt, err := u.ManagementToken()
	if err != nil {
		return nil, fmt.Errorf("render consul ACL: %w", err)
	}
	recovery, err := u.AgentRecoveryToken()
	if err != nil {
		return nil, fmt.Errorf("render consul ACL: %w", err)
	}
	add(ConsulACLFile, aclConfig(roleToken, mgmt, recovery), 0o600, ConsumerConsul)
	add(ConsulTokenFile, []byte(roleToken.Reveal()+"\n"), 0o600, ConsumerAgent)
	add(ConsulDir+"/encrypt.hcl", hclFile(fmt.Sprintf("encrypt = %s\n", quote(u.GossipKey.Reveal()))), 0o600, ConsumerConsul)
	add(ConsulDir+"/join.hcl", joinConfig(in), 0o600, ConsumerConsul)

	add(NodeExporterDefaults, nodeExporterDefaults(data.PrivateIP), 0o644, ConsumerNodeExporter)

	roleFS, err := roles.FS(u.Role)
	if err != nil {
		return nil, fmt.Errorf("render role files: %w", err)
	}
	services, err := fs.Glob(roleFS, "consul/*.hcl")
	if err != nil {
		return nil, fmt.Errorf("render role %s services: %w", u.Role, err)
	}
	for _, name := range services {
		b, err := execRoleFile(roleFS, name, data)
		if err != nil {
			return nil, err
		}
		add(ConsulDir+"/service-"+path.Base(name), hclFile(string(b)), 0o640, ConsumerConsul)
	}

	compose, err := execRoleFile(roleFS, "compose.yaml", data)
	if err != nil {
		return nil, err
	}
	add(ComposeFile(u.Role), compose, 0o644, ConsumerCompose)

	tmpls, err := fs.Glob(roleFS, "templates/*.ctmpl")
	if err != nil {
		return nil, fmt.Errorf("render role %s templates: %w", u.Role, err)
	}
	var stanzas []templateStanza
	for _, name := range tmpls {
		b, err := execRoleFile(roleFS, name, data)
		if err != nil {
			return nil, err
		}
		src := path.Join(TemplateSourceDir, path.Base(name))
		dst := path.Join(ComposeRoot, u.Role, strings.TrimSuffix(path.Base(name), ".ctmpl"))
		add(src, b, 0o644, ConsumerConsulTemplate)
		stanzas = append(stanzas, templateStanza{Source: src, Destination: dst})
	}
	// 0600: the config carries the role's Consul token.
	add(TemplateConfig, templateConfig(in, stanzas, roleToken), 0o600, ConsumerConsulTemplate)

	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

const header = "# Rendered by codelab-agent from the droplet's metadata and user_data.\n# Do not edit: the agent rewrites it at boot.\n"

func hclFile(body string) []byte { return []byte(header + body) }

func consulConfig(in Input, d roles.Data) []byte {
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%-20s = %s\n", k, v) }
	kv("datacenter", quote(d.Datacenter))
	kv("node_name", quote(in.Meta.Hostname))
	kv("data_dir", quote(in.ContentRoot+ConsulDataDir))
	kv("bind_addr", quote(d.PrivateIP))
	kv("advertise_addr", quote(d.PrivateIP))
	kv("client_addr", quote("127.0.0.1"))
	kv("log_level", quote("INFO"))
	kv("disable_update_check", "true")
	kv("leave_on_terminate", strconv.FormatBool(in.User.Consul != userdata.ConsulServer))
	b.WriteString("\nnode_meta {\n")
	fmt.Fprintf(&b, "  role       = %s\n", quote(in.User.Role))
	fmt.Fprintf(&b, "  env        = %s\n", quote(in.User.Env))
	fmt.Fprintf(&b, "  droplet_id = %s\n", quote(in.Meta.DropletID))
	b.WriteString("}\n")
	if in.User.Consul == userdata.ConsulServer {
		b.WriteString("\n")
		kv("server", "true")
		kv("bootstrap_expect", strconv.Itoa(in.User.Bootstrap))
		b.WriteString("\nui_config {\n  enabled = true\n}\n")
	} else {
		b.WriteString("\n")
		kv("server", "false")
	}
	tlsConfig(&b, in)
	if p := in.Ports; p != nil {
		b.WriteString("\nports {\n")
		for _, e := range []struct {
			k string
			v int
		}{{"http", p.HTTP}, {"dns", p.DNS}, {"serf_lan", p.SerfLAN}, {"serf_wan", p.SerfWAN}, {"server", p.Server}, {"grpc", p.GRPC}, {"grpc_tls", p.GRPCTLS}} {
			if e.v != 0 {
				fmt.Fprintf(&b, "  %-8s = %d\n", e.k, e.v)
			}
		}
		b.WriteString("}\n")
	}
	return hclFile(b.String())
}

// tlsConfig turns on TLS for Consul's RPC (port 8300). Servers present
// their own certificate, require one from every peer (verify_incoming) and
// hand clients theirs through auto_encrypt; clients check that a server's
// certificate is signed by the cluster's CA and names
// server.<datacenter>.consul, so a host on the VPC can neither read nor
// write the catalog or KV over RPC, nor pose as a server.
func tlsConfig(b *strings.Builder, in Input) {
	root := in.ContentRoot
	b.WriteString("\ntls {\n  defaults {\n")
	fmt.Fprintf(b, "    ca_file         = %s\n", quote(root+ConsulCAFile))
	if in.User.Consul == userdata.ConsulServer {
		fmt.Fprintf(b, "    cert_file       = %s\n", quote(root+ConsulCertFile))
		fmt.Fprintf(b, "    key_file        = %s\n", quote(root+ConsulKeyFile))
		b.WriteString("    verify_incoming = true\n")
	}
	b.WriteString("    verify_outgoing = true\n  }\n\n  internal_rpc {\n    verify_server_hostname = true\n  }\n}\n")
	if in.User.Consul == userdata.ConsulServer {
		b.WriteString("\nauto_encrypt {\n  allow_tls = true\n}\n")
	} else {
		b.WriteString("\nauto_encrypt {\n  tls = true\n}\n")
	}
}

// aclConfig turns on Consul's ACLs, default deny. The agent acts with its
// role's token; a server also holds the cluster's initial management token
// (derived from the CA key), with which codelab-agent creates the policies
// and role tokens once there is a leader.
func aclConfig(agent, management, recovery userdata.Secret) []byte {
	var b strings.Builder
	b.WriteString("acl {\n")
	b.WriteString("  enabled                  = true\n")
	b.WriteString("  default_policy           = \"deny\"\n")
	b.WriteString("  down_policy              = \"extend-cache\"\n")
	b.WriteString("  enable_token_persistence = true\n\n")
	b.WriteString("  tokens {\n")
	if management != "" {
		fmt.Fprintf(&b, "    %-32s = %s\n", "initial_management", quote(management.Reveal()))
	}
	// The agent's own token also registers the services of the role's
	// config files (without it they would use the anonymous token).
	fmt.Fprintf(&b, "    %-32s = %s\n", "agent", quote(agent.Reveal()))
	fmt.Fprintf(&b, "    %-32s = %s\n", "config_file_service_registration", quote(agent.Reveal()))
	// The boot's own view of the local agent before any server can
	// resolve a token (see userdata.Config.AgentRecoveryToken).
	fmt.Fprintf(&b, "    %-32s = %s\n", "agent_recovery", quote(recovery.Reveal()))
	b.WriteString("  }\n}\n")
	return hclFile(b.String())
}

// RoleTokens are every role's token in the droplet's env, derived from its
// CA key, with the services each role registers.
func RoleTokens(u userdata.Config) ([]consul.RoleToken, error) {
	ca, err := u.ClusterCA()
	if err != nil {
		return nil, err
	}
	var out []consul.RoleToken
	for _, role := range userdata.Roles {
		name := clustersec.RoleTokenName(u.Env, role)
		secret, err := ca.ACLToken(name)
		if err != nil {
			return nil, err
		}
		acc, err := ca.ACLAccessor(name)
		if err != nil {
			return nil, err
		}
		svcs, err := roles.Services(role)
		if err != nil {
			return nil, err
		}
		out = append(out, consul.RoleToken{Role: role, Accessor: acc, Secret: secret, Services: svcs})
	}
	return out, nil
}

// nodeExporterDefaults binds the node exporter to the VPC address. The file
// replaces the package's, whose only setting is ARGS.
func nodeExporterDefaults(ip string) []byte {
	addr := net.JoinHostPort(ip, strconv.Itoa(NodeExporterPort))
	return []byte(header + "# prometheus-node-exporter listens on the droplet's VPC address only.\n" +
		"ARGS=" + quote("--web.listen-address="+addr) + "\n")
}

// joinConfig is its own 0600 file because cloud auto-join carries the API
// token.
func joinConfig(in Input) []byte {
	u := in.User
	var entries []string
	if u.Join.Tag != "" {
		entries = append(entries, fmt.Sprintf("provider=digitalocean region=%s tag_name=%s api_token=%s",
			in.Meta.Region, u.Join.Tag, u.DOToken.Reveal()))
	} else {
		entries = u.Join.Addrs
	}
	var b strings.Builder
	b.WriteString("retry_join = [\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "  %s,\n", quote(e))
	}
	b.WriteString("]\n")
	return hclFile(b.String())
}

type templateStanza struct{ Source, Destination string }

func templateConfig(in Input, stanzas []templateStanza, token userdata.Secret) []byte {
	httpPort := 8500
	if in.Ports != nil && in.Ports.HTTP != 0 {
		httpPort = in.Ports.HTTP
	}
	role := in.User.Role
	var b strings.Builder
	fmt.Fprintf(&b, "consul {\n  address = %s\n  token   = %s\n\n  retry {\n    enabled     = true\n    attempts    = 0\n    backoff     = \"250ms\"\n    max_backoff = \"1m\"\n  }\n}\n\n", quote(fmt.Sprintf("127.0.0.1:%d", httpPort)), quote(token.Reveal()))
	b.WriteString("log_level = \"info\"\n\nwait {\n  min = \"2s\"\n  max = \"10s\"\n}\n")
	for _, s := range stanzas {
		// An unchanged render runs nothing; a changed one re-applies the
		// role's Compose project, which recreates only what changed.
		cmd := []string{"flock", "--wait", "240", in.ContentRoot + ComposeLock(role),
			"docker", "compose", "-p", role, "-f", in.ContentRoot + ComposeFile(role), "up", "-d", "--wait", "--pull", "never"}
		quoted := make([]string, len(cmd))
		for i, c := range cmd {
			quoted[i] = quote(c)
		}
		b.WriteString("\ntemplate {\n")
		for _, kv := range [][2]string{
			{"source", quote(in.ContentRoot + s.Source)},
			{"destination", quote(in.ContentRoot + s.Destination)},
			{"perms", "0600"},
			{"create_dest_dirs", "true"},
			{"error_on_missing_key", "true"},
		} {
			fmt.Fprintf(&b, "  %-20s = %s\n", kv[0], kv[1])
		}
		fmt.Fprintf(&b, "\n  exec {\n    command = [%s]\n    timeout = \"300s\"\n  }\n}\n", strings.Join(quoted, ", "))
	}
	return hclFile(b.String())
}

func execRoleFile(fsys fs.FS, name string, d roles.Data) ([]byte, error) {
	src, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("read role %s file %s: %w", d.Role, name, err)
	}
	t, err := roles.Parse(name, src)
	if err != nil {
		return nil, fmt.Errorf("parse role %s file %s: %w", d.Role, name, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, d); err != nil {
		return nil, fmt.Errorf("render role %s file %s: %w", d.Role, name, err)
	}
	return out.Bytes(), nil
}

// quote writes an HCL string literal.
func quote(s string) string { return strconv.Quote(s) }
