// Package userdata defines the droplet's one-line user_data:
//
//	#codelab v1 role=api env=prod consul=client join=tag:codelab-consul gossip=…
//
// A fixed marker with a format version, then space-separated key=value
// settings. Parse is strict: unknown keys, duplicates, bad values, a missing
// marker, several lines or an over-long line are errors that name the token
// and say what was expected. Secret values never appear in errors or in
// String/Redacted output meant for logs.
package userdata

import (
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/codelab-app/infra/internal/clustersec"
)

// Marker starts every line; Version is the only format this agent reads.
const (
	Marker  = "#codelab"
	Version = "v1"
	// MaxLen bounds the line. DigitalOcean allows 64 KiB of user_data; a
	// codelab line is far shorter, so anything longer is a mistake.
	MaxLen = 2048
)

// Roles a droplet can take.
var Roles = []string{"api", "web", "landing", "sites", "neo4j"}

// Consul modes.
const (
	ConsulServer = "server"
	ConsulClient = "client"
)

// Defaults for optional keys.
const (
	DefaultEnv      = "prod"
	DefaultJoinTag  = "codelab-consul"
	DefaultVersion  = "latest"
	DefaultRegistry = "registry.digitalocean.com/codelab"
	DefaultExpect   = 3
)

// Secret is a value that must never be printed. Its String and GoString
// methods return a placeholder, so a stray %v in a log line cannot leak it.
type Secret string

func (s Secret) String() string   { return redacted(string(s)) }
func (s Secret) GoString() string { return redacted(string(s)) }

// MarshalText keeps secrets out of JSON and slog output too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret's value, for writing it to a 0600 file.
func (s Secret) Reveal() string { return string(s) }

func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// Join says how Consul finds its servers: by DigitalOcean tag (cloud
// auto-join) or by a fixed list of addresses.
type Join struct {
	Tag   string   // non-empty for join=tag:NAME
	Addrs []string // non-empty for join=a,b,c
}

func (j Join) String() string {
	if j.Tag != "" {
		return "tag:" + j.Tag
	}
	return strings.Join(j.Addrs, ",")
}

// Config is a parsed, validated user_data line.
type Config struct {
	Role      string
	Env       string
	Consul    string // ConsulServer or ConsulClient
	Bootstrap int    // servers expected; only for servers
	Join      Join
	DC        string // empty: the droplet's region
	Version   string // application image tag
	Registry  string // where the role's images come from

	// CA is the cluster's Consul CA certificate (ca=, public; required):
	// every agent verifies the servers with it. CAKey (ca_key=) is its
	// private key, on servers only: they sign their own RPC certificates.
	CA    string
	CAKey Secret
	// ConsulToken (consul_token=, clients only; required there) is the
	// role's Consul ACL token. Servers derive theirs from CAKey.
	ConsulToken Secret

	GossipKey     Secret // consul keygen output; required
	RegistryToken Secret // DigitalOcean Container Registry token; optional
	DOToken       Secret // read-only API token for join=tag:; required then
}

// key describes one setting: its help text, whether it is secret, and how
// to read it into a Config.
type key struct {
	name    string
	secret  bool
	expects string
	set     func(c *Config, v string) error
	get     func(c Config) string
}

var (
	envRE      = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	dcRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	tagRE      = regexp.MustCompile(`^[A-Za-z0-9_:-]{1,255}$`)
	versionRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	registryRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*$`)
	hostRE     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
	tokenRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{8,512}$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// keys is the v1 key set, in the order String writes them.
var keys = []key{
	{name: "role", expects: "one of " + strings.Join(Roles, ", "),
		set: func(c *Config, v string) error {
			if !slices.Contains(Roles, v) {
				return errBad
			}
			c.Role = v
			return nil
		}, get: func(c Config) string { return c.Role }},
	{name: "env", expects: "a lower-case name such as prod or staging (letters, digits, dashes; at most 32)",
		set: func(c *Config, v string) error { return setRE(&c.Env, v, envRE) },
		get: func(c Config) string { return c.Env }},
	{name: "consul", expects: "server or client",
		set: func(c *Config, v string) error {
			if v != ConsulServer && v != ConsulClient {
				return errBad
			}
			c.Consul = v
			return nil
		}, get: func(c Config) string { return c.Consul }},
	{name: "bootstrap", expects: "the number of Consul servers expected, 1 to 9 (servers only)",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 9 || strconv.Itoa(n) != v {
				return errBad
			}
			c.Bootstrap = n
			return nil
		}, get: func(c Config) string {
			if c.Consul != ConsulServer {
				return ""
			}
			return strconv.Itoa(c.Bootstrap)
		}},
	{name: "join", expects: "tag:NAME (DigitalOcean tag of the Consul servers) or a comma list of addresses",
		set: func(c *Config, v string) error {
			j, err := parseJoin(v)
			if err != nil {
				return err
			}
			c.Join = j
			return nil
		}, get: func(c Config) string { return c.Join.String() }},
	{name: "dc", expects: "a Consul datacenter name (lower-case letters, digits, - and _); default: the droplet's region",
		set: func(c *Config, v string) error { return setRE(&c.DC, v, dcRE) },
		get: func(c Config) string { return c.DC }},
	{name: "version", expects: "the application image tag, e.g. 1.4.2 or a git SHA",
		set: func(c *Config, v string) error { return setRE(&c.Version, v, versionRE) },
		get: func(c Config) string { return c.Version }},
	{name: "registry", expects: "an image registry path such as registry.digitalocean.com/codelab",
		set: func(c *Config, v string) error { return setRE(&c.Registry, v, registryRE) },
		get: func(c Config) string { return c.Registry }},
	{name: "ca", expects: "the cluster's Consul CA certificate, URL-safe base64 DER, from `codelab-agent userdata --new-ca`",
		set: func(c *Config, v string) error {
			if _, err := clustersec.DecodeCert(v); err != nil {
				return errBad
			}
			c.CA = v
			return nil
		}, get: func(c Config) string { return c.CA }},
	{name: "ca_key", secret: true, expects: "the Consul CA's private key (43 characters of URL-safe base64; servers only)",
		set: func(c *Config, v string) error {
			if _, err := clustersec.DecodeKey(v); err != nil {
				return errBad
			}
			c.CAKey = Secret(v)
			return nil
		}, get: func(c Config) string { return c.CAKey.Reveal() }},
	{name: "consul_token", secret: true, expects: "the role's Consul ACL token, a UUID from `codelab-agent userdata` (clients only)",
		set: func(c *Config, v string) error {
			if !uuidRE.MatchString(v) {
				return errBad
			}
			c.ConsulToken = Secret(v)
			return nil
		}, get: func(c Config) string { return c.ConsulToken.Reveal() }},
	{name: "gossip", secret: true, expects: "the Consul gossip key: base64 of 32 bytes, as printed by `consul keygen`",
		set: func(c *Config, v string) error {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil || len(b) != 32 {
				return errBad
			}
			c.GossipKey = Secret(v)
			return nil
		}, get: func(c Config) string { return c.GossipKey.Reveal() }},
	{name: "registry_token", secret: true, expects: "a DigitalOcean Container Registry token (8 to 512 of A-Z a-z 0-9 _ . -)",
		set: func(c *Config, v string) error { return setSecret(&c.RegistryToken, v) },
		get: func(c Config) string { return c.RegistryToken.Reveal() }},
	{name: "do_token", secret: true, expects: "a read-only DigitalOcean API token, used by Consul to find servers by tag",
		set: func(c *Config, v string) error { return setSecret(&c.DOToken, v) },
		get: func(c Config) string { return c.DOToken.Reveal() }},
}

// errBad means "the value is not what the key expects"; Parse turns it into
// a message built from the key's expects text.
var errBad = fmt.Errorf("bad value")

func setRE(dst *string, v string, re *regexp.Regexp) error {
	if !re.MatchString(v) {
		return errBad
	}
	*dst = v
	return nil
}

func setSecret(dst *Secret, v string) error {
	if !tokenRE.MatchString(v) {
		return errBad
	}
	*dst = Secret(v)
	return nil
}

func parseJoin(v string) (Join, error) {
	if name, ok := strings.CutPrefix(v, "tag:"); ok {
		if !tagRE.MatchString(name) {
			return Join{}, errBad
		}
		return Join{Tag: name}, nil
	}
	var addrs []string
	for _, a := range strings.Split(v, ",") {
		host := a
		if h, port, err := net.SplitHostPort(a); err == nil {
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				return Join{}, errBad
			}
			host = h
		}
		if net.ParseIP(host) == nil && !hostRE.MatchString(host) {
			return Join{}, errBad
		}
		if slices.Contains(addrs, a) {
			return Join{}, errBad
		}
		addrs = append(addrs, a)
	}
	return Join{Addrs: addrs}, nil
}

func lookup(name string) (key, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return key{}, false
}

// KeyNames lists the v1 keys in canonical order.
func KeyNames() []string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.name
	}
	return names
}

// Error is a user_data problem. Token is 1-based (the marker is tokens 1
// and 2) and 0 when the problem is the line as a whole.
type Error struct {
	Token int
	Text  string // the offending token, with a secret value redacted
	Msg   string
}

func (e *Error) Error() string {
	if e.Token == 0 {
		return "user_data: " + e.Msg
	}
	return fmt.Sprintf("user_data: token %d %q: %s", e.Token, e.Text, e.Msg)
}

// Parse reads one user_data line. A single trailing newline (and a CR before
// it) is allowed; anything else that is not exactly one line is an error.
func Parse(s string) (Config, error) {
	line := strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	if len(line) > MaxLen {
		return Config{}, &Error{Msg: fmt.Sprintf("line is %d bytes; a codelab line is at most %d", len(line), MaxLen)}
	}
	if n := strings.Count(line, "\n") + 1; n > 1 {
		return Config{}, &Error{Msg: fmt.Sprintf("has %d lines; the codelab format is exactly one line starting with %q", n, Marker+" "+Version)}
	}
	if strings.ContainsAny(line, "\r\t\x00") {
		return Config{}, &Error{Msg: "contains a control character (tab, CR or NUL); separate settings with single spaces"}
	}
	fields := strings.Fields(line)
	hide := redactor(fields)
	word := func(s string) string {
		if h := hide(s); h != s {
			return h
		}
		return safeWord(s)
	}
	if len(fields) == 0 {
		return Config{}, &Error{Msg: fmt.Sprintf("is empty; expected %q followed by key=value settings (role is required)", Marker+" "+Version)}
	}
	if fields[0] != Marker {
		return Config{}, &Error{Token: 1, Text: word(fields[0]), Msg: fmt.Sprintf("missing marker: a codelab line starts with %q", Marker+" "+Version)}
	}
	if len(fields) < 2 {
		return Config{}, &Error{Token: 0, Msg: fmt.Sprintf("missing format version after %q; expected %q", Marker, Version)}
	}
	if fields[1] != Version {
		return Config{}, &Error{Token: 2, Text: word(fields[1]), Msg: fmt.Sprintf("unsupported format version; this agent reads %q", Version)}
	}
	c := Config{}
	seen := map[string]int{}
	for i, tok := range fields[2:] {
		pos := i + 3
		name, value, ok := strings.Cut(tok, "=")
		if !ok {
			return Config{}, &Error{Token: pos, Text: word(tok), Msg: "expected key=value; keys are " + strings.Join(KeyNames(), ", ")}
		}
		k, known := lookup(name)
		shown := tok
		if known && k.secret {
			shown = name + "=<redacted>"
		}
		if !known {
			return Config{}, &Error{Token: pos, Text: word(name) + "=…", Msg: fmt.Sprintf("unknown key %q; keys are %s", word(name), strings.Join(KeyNames(), ", "))}
		}
		if first, dup := seen[name]; dup {
			return Config{}, &Error{Token: pos, Text: clip(hide(shown)), Msg: fmt.Sprintf("duplicate key %q (already set by token %d)", name, first)}
		}
		seen[name] = pos
		if value == "" {
			return Config{}, &Error{Token: pos, Text: hide(shown), Msg: fmt.Sprintf("empty value for %s; expected %s", name, k.expects)}
		}
		if err := k.set(&c, value); err != nil {
			return Config{}, &Error{Token: pos, Text: clip(hide(shown)), Msg: fmt.Sprintf("bad value for %s; expected %s", name, k.expects)}
		}
	}
	if err := c.complete(seen); err != nil {
		return Config{}, err
	}
	return c, nil
}

// complete applies defaults and checks the rules that span keys.
func (c *Config) complete(seen map[string]int) error {
	if c.Role == "" {
		return &Error{Msg: "missing required key role; expected role=" + strings.Join(Roles, "|")}
	}
	if c.Env == "" {
		c.Env = DefaultEnv
	}
	if c.Consul == "" {
		c.Consul = ConsulClient
	}
	if c.Consul == ConsulServer && c.Bootstrap == 0 {
		c.Bootstrap = DefaultExpect
	}
	if c.Consul == ConsulClient && c.Bootstrap != 0 {
		return &Error{Token: seen["bootstrap"], Text: fmt.Sprintf("bootstrap=%d", c.Bootstrap), Msg: "bootstrap is only for consul=server"}
	}
	if c.Join.Tag == "" && len(c.Join.Addrs) == 0 {
		c.Join = Join{Tag: DefaultJoinTag}
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.Registry == "" {
		c.Registry = DefaultRegistry
	}
	if c.GossipKey == "" {
		return &Error{Msg: "missing required key gossip; expected gossip=<base64 of 32 bytes> from `consul keygen` (the same on every droplet)"}
	}
	if c.Join.Tag != "" && c.DOToken == "" {
		return &Error{Msg: fmt.Sprintf("join=tag:%s needs do_token=<read-only DigitalOcean API token> so Consul can find the servers by tag; or give join=addr1,addr2", c.Join.Tag)}
	}
	if c.CA == "" {
		return &Error{Msg: "missing required key ca; expected ca=<the cluster's CA certificate> from `codelab-agent userdata --new-ca DIR` (the same on every droplet): Consul's RPC runs over TLS"}
	}
	if c.Consul == ConsulClient && c.CAKey != "" {
		return &Error{Token: seen["ca_key"], Text: "ca_key=<redacted>", Msg: "ca_key is only for consul=server: a client needs only the public ca="}
	}
	if c.Consul == ConsulServer && c.CAKey == "" {
		return &Error{Msg: "consul=server needs ca_key=<the CA's private key> to sign its own RPC certificate"}
	}
	if c.Consul == ConsulServer && c.ConsulToken != "" {
		return &Error{Token: seen["consul_token"], Text: "consul_token=<redacted>", Msg: "consul_token is only for consul=client: a server derives its tokens from ca_key"}
	}
	if c.Consul == ConsulClient && c.ConsulToken == "" {
		return &Error{Msg: "consul=client needs consul_token=<the role's Consul ACL token>; `codelab-agent userdata --ca ca.pem --ca-key-file ca-key.pem` derives it (Consul runs with ACLs, default deny)"}
	}
	if c.CAKey != "" {
		if _, err := clustersec.Parse(c.CA, c.CAKey.Reveal()); err != nil {
			return &Error{Token: seen["ca_key"], Text: "ca_key=<redacted>", Msg: "ca_key does not belong to the certificate in ca= (is it another cluster's CA?)"}
		}
	}
	return nil
}

// Line is the canonical line, secrets included: it is what Terraform puts
// into user_data. Never log it.
func (c Config) Line() string { return c.line(false) }

// Redacted is the canonical line with every secret value replaced.
func (c Config) Redacted() string { return c.line(true) }

// String is Redacted, so that printing a Config with %v cannot leak.
func (c Config) String() string { return c.Redacted() }

func (c Config) line(redact bool) string {
	var b strings.Builder
	b.WriteString(Marker + " " + Version)
	for _, k := range keys {
		v := k.get(c)
		if v == "" {
			continue
		}
		if redact && k.secret {
			v = "<redacted>"
		}
		b.WriteString(" " + k.name + "=" + v)
	}
	return b.String()
}

// ClusterCA decodes ca= and, on a server, ca_key= (Parse has checked that
// they belong together).
func (c Config) ClusterCA() (clustersec.CA, error) {
	ca, err := clustersec.Parse(c.CA, c.CAKey.Reveal())
	if err != nil {
		return clustersec.CA{}, fmt.Errorf("cluster CA: %w", err)
	}
	return ca, nil
}

// RoleToken is the Consul ACL token of the droplet's role: consul_token=
// on a client, derived from the CA key on a server.
func (c Config) RoleToken() (Secret, error) {
	if c.ConsulToken != "" {
		return c.ConsulToken, nil
	}
	return c.derived(clustersec.RoleTokenName(c.Env, c.Role))
}

// AgentRecoveryToken is the droplet's Consul agent recovery token, derived
// from its role token: it opens the local agent's own endpoints (self,
// members) even while no server can resolve tokens (no leader yet), which
// is when the boot needs to see why.
func (c Config) AgentRecoveryToken() (Secret, error) {
	t, err := c.RoleToken()
	if err != nil {
		return "", err
	}
	return Secret(clustersec.SubToken(t.Reveal(), "agent recovery")), nil
}

// ManagementToken is the cluster's initial management token; only a server
// (which holds the CA key) has it, "" elsewhere.
func (c Config) ManagementToken() (Secret, error) {
	if c.CAKey == "" {
		return "", nil
	}
	return c.derived(clustersec.ManagementTokenName)
}

func (c Config) derived(name string) (Secret, error) {
	ca, err := c.ClusterCA()
	if err != nil {
		return "", err
	}
	t, err := ca.ACLToken(name)
	if err != nil {
		return "", fmt.Errorf("derive Consul token: %w", err)
	}
	return Secret(t), nil
}

// Datacenter is the Consul datacenter: dc= or else the region.
func (c Config) Datacenter(region string) string {
	if c.DC != "" {
		return c.DC
	}
	return region
}

// Help documents the key set for --help and the README.
func Help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "user_data is one line: %s %s key=value ...\n\n", Marker, Version)
	for _, k := range keys {
		var notes []string
		switch k.name {
		case "role", "gossip", "ca":
			notes = append(notes, "required")
		case "ca_key":
			notes = append(notes, "required for servers")
		case "consul_token":
			notes = append(notes, "required for clients")
		case "do_token":
			notes = append(notes, "required with join=tag:")
		}
		if k.secret {
			notes = append(notes, "secret")
		}
		tag := ""
		if len(notes) > 0 {
			tag = " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(&b, "  %-15s %s%s\n", k.name, k.expects, tag)
	}
	fmt.Fprintf(&b, "\nDefaults: env=%s consul=%s bootstrap=%d (servers) join=tag:%s dc=<region> version=%s registry=%s\n",
		DefaultEnv, ConsulClient, DefaultExpect, DefaultJoinTag, DefaultVersion, DefaultRegistry)
	b.WriteString("Secrets are written to 0600 files by the agent and never logged or printed.\n")
	return b.String()
}

var wordRE = regexp.MustCompile(`^[#!/a-z0-9_.-]{1,20}$`)

// safeWord shows a token that is not a known key=value only when it looks
// like a word someone typed (a key name, a shebang); anything else could be
// a secret pasted in the wrong place, so only its length is shown.
func safeWord(s string) string {
	if wordRE.MatchString(s) {
		return s
	}
	return fmt.Sprintf("<%d characters>", len(s))
}

// redactor returns a function that replaces, by its length, any token that
// holds the value of a secret key set elsewhere on the line (a token that
// happens to repeat the do_token, say), so that no error prints a secret.
func redactor(fields []string) func(string) string {
	var secrets []string
	for _, f := range fields {
		name, value, ok := strings.Cut(f, "=")
		if k, known := lookup(name); ok && known && k.secret && value != "" {
			secrets = append(secrets, value)
		}
	}
	return func(s string) string {
		for _, v := range secrets {
			if strings.Contains(s, v) {
				return fmt.Sprintf("<%d characters>", len(s))
			}
		}
		return s
	}
}

func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
