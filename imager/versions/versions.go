// Package versions reads packer/versions.pkrvars.hcl, the one file of pinned versions,
// checksums and keys, with the HCL parser Packer itself uses (hcl/v2), and checks every
// value against a schema. It is the only reader of that file: the imager resolves its
// artifacts from it and the end-to-end harness builds its local stand-ins from it, which
// is why it lives outside internal/.
package versions

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// File is the versions file's path relative to the repository root.
const File = "packer/versions.pkrvars.hcl"

// Kind is what a variable holds.
type Kind int

// Kinds of values.
const (
	Semver      Kind = iota // 1.17.1
	SHA256                  // 64 lowercase hex digits
	URL                     // http(s) or file URL
	Fingerprint             // OpenPGP v4 fingerprint: 40 uppercase hex digits
	AptVersion              // a Debian package version, or "latest"
	Regions                 // a non-empty list of region slugs
)

func (k Kind) String() string {
	return [...]string{"a version (like 1.2.3)", "a SHA-256 (64 hex digits)", "a URL",
		"an OpenPGP fingerprint (40 hex digits)", `an apt version or "latest"`, "a list of region slugs"}[k]
}

// Var is one variable the file may (and must) set.
type Var struct {
	Name string
	Kind Kind
}

// Schema lists every variable of the versions file. Each is declared in
// packer/common/variables.pkr.hcl as well (a test keeps the two in step).
var Schema = []Var{
	{"consul_version", Semver},
	{"consul_sha256", SHA256},
	{"consul_template_version", Semver},
	{"consul_template_sha256", SHA256},
	{"doctl_version", Semver},
	{"docker_apt_url", URL},
	{"docker_apt_key_fingerprint", Fingerprint},
	{"docker_ce_version", AptVersion},
	{"containerd_version", AptVersion},
	{"docker_compose_plugin_version", AptVersion},
	{"snapshot_regions", Regions},
}

// Latest is the apt version that lets apt pick the newest package in the repository.
const Latest = "latest"

// Versions are the parsed values.
type Versions struct {
	Path    string
	values  map[string]string
	regions []string
	lines   map[string]int
}

// Get returns a string variable's value ("" when unset).
func (v *Versions) Get(name string) string { return v.values[name] }

// Regions returns snapshot_regions.
func (v *Versions) Regions() []string { return slices.Clone(v.regions) }

// Line returns the line a variable is set on (0 when unset).
func (v *Versions) Line(name string) int { return v.lines[name] }

// Error is one problem in a versions file, with the line it is on.
type Error struct {
	Path string
	Line int    // 0: the file as a whole
	Var  string // may be empty
	Msg  string
}

func (e *Error) Error() string {
	where := e.Path
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.Path, e.Line)
	}
	if e.Var != "" {
		return fmt.Sprintf("%s: %s: %s", where, e.Var, e.Msg)
	}
	return fmt.Sprintf("%s: %s", where, e.Msg)
}

// Load reads and parses the versions file at path; every variable of Schema must be set.
func Load(path string) (*Versions, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read versions file: %w", err)
	}
	return Parse(path, b)
}

// Parse parses a complete versions file.
func Parse(path string, src []byte) (*Versions, error) {
	v, errs := parse(path, src)
	if v == nil {
		return nil, errors.Join(errs...) // not HCL: nothing more to say about it
	}
	for _, s := range Schema {
		if _, ok := v.lines[s.Name]; !ok {
			errs = append(errs, &Error{Path: path, Var: s.Name, Msg: "not set (want " + s.Kind.String() + ")"})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return v, nil
}

// LoadOverride reads a partial versions file (the same schema, any subset): the local
// DigitalOcean's builds use one to point at a local apt repository and its test key.
func LoadOverride(path string) (*Versions, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read versions override: %w", err)
	}
	v, errs := parse(path, b)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return v, nil
}

// With returns v with every variable that o sets replaced by o's value.
func (v *Versions) With(o *Versions) *Versions {
	out := &Versions{Path: v.Path, values: map[string]string{}, regions: slices.Clone(v.regions), lines: map[string]int{}}
	for k, x := range v.values {
		out.values[k] = x
	}
	for k, x := range v.lines {
		out.lines[k] = x
	}
	for k, x := range o.values {
		out.values[k] = x
	}
	if o.regions != nil {
		out.regions = slices.Clone(o.regions)
	}
	return out
}

// Names returns the variables v sets, sorted.
func (v *Versions) Names() []string {
	var out []string
	for k := range v.lines {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// parse returns the values and every problem; a nil *Versions means the text is not
// HCL (a syntax error, or a name set twice, which HCL's parser reports with both lines).
func parse(path string, src []byte) (*Versions, []error) {
	v := &Versions{Path: path, values: map[string]string{}, lines: map[string]int{}}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagErrors(path, diags)
	}
	body := f.Body.(*hclsyntax.Body)
	var errs []error
	for _, b := range body.Blocks {
		errs = append(errs, &Error{Path: path, Line: b.TypeRange.Start.Line, Msg: fmt.Sprintf("unexpected block %q: the file holds only name = value lines", b.Type)})
	}
	attrs := make([]*hclsyntax.Attribute, 0, len(body.Attributes))
	for _, a := range body.Attributes {
		attrs = append(attrs, a)
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].SrcRange.Start.Byte < attrs[j].SrcRange.Start.Byte })
	for _, a := range attrs {
		line := a.SrcRange.Start.Line
		i := slices.IndexFunc(Schema, func(s Var) bool { return s.Name == a.Name })
		if i < 0 {
			errs = append(errs, &Error{Path: path, Line: line, Var: a.Name, Msg: "unknown variable (known: " + knownNames() + ")"})
			continue
		}
		kind := Schema[i].Kind
		val, d := a.Expr.Value(nil)
		if d.HasErrors() {
			errs = append(errs, &Error{Path: path, Line: line, Var: a.Name, Msg: "not a literal value: " + d[0].Summary})
			continue
		}
		v.lines[a.Name] = line
		if kind == Regions {
			rs, err := regionList(val)
			if err != nil {
				errs = append(errs, &Error{Path: path, Line: line, Var: a.Name, Msg: err.Error()})
				continue
			}
			v.regions = rs
			continue
		}
		if val.IsNull() || !val.Type().Equals(cty.String) {
			errs = append(errs, &Error{Path: path, Line: line, Var: a.Name, Msg: "want a quoted string (" + kind.String() + ")"})
			continue
		}
		s := val.AsString()
		if err := check(kind, s); err != nil {
			errs = append(errs, &Error{Path: path, Line: line, Var: a.Name, Msg: err.Error()})
			continue
		}
		v.values[a.Name] = s
	}
	return v, errs
}

func diagErrors(path string, diags hcl.Diagnostics) []error {
	var errs []error
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		line := 0
		if d.Subject != nil {
			line = d.Subject.Start.Line
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		errs = append(errs, &Error{Path: path, Line: line, Msg: msg})
	}
	return errs
}

func knownNames() string {
	var n []string
	for _, s := range Schema {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

var (
	semverRE      = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	hexRE         = regexp.MustCompile(`^[0-9a-fA-F]*$`)
	aptVersionRE  = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)
	regionRE      = regexp.MustCompile(`^[a-z]{3}[0-9]$`)
	errEmptyValue = errors.New("empty")
)

func check(k Kind, s string) error {
	if s == "" {
		return fmt.Errorf("%w: want %s", errEmptyValue, k)
	}
	switch k {
	case Semver:
		if !semverRE.MatchString(s) {
			return fmt.Errorf("%q is not a version like 1.2.3", s)
		}
	case SHA256:
		return hexPin(s, 64, "a SHA-256", false)
	case Fingerprint:
		return hexPin(s, 40, "an OpenPGP fingerprint", true)
	case AptVersion:
		if s != Latest && !aptVersionRE.MatchString(s) {
			return fmt.Errorf("%q is not an apt version (like 5:24.0.7-1~debian.12~bookworm) or %q", s, Latest)
		}
	case URL:
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") {
			return fmt.Errorf("%q is not an http(s) or file URL", s)
		}
		if strings.HasSuffix(s, "/") {
			return fmt.Errorf("%q: leave off the trailing /", s)
		}
	}
	return nil
}

func hexPin(s string, n int, what string, upper bool) error {
	if !hexRE.MatchString(s) {
		return fmt.Errorf("%q is not %s: only hex digits (no spaces)", s, what)
	}
	if len(s) != n {
		return fmt.Errorf("%q has %d hex digits; %s has %d", s, len(s), what, n)
	}
	if upper && s != strings.ToUpper(s) {
		return fmt.Errorf("%q: write the fingerprint in upper case", s)
	}
	if !upper && s != strings.ToLower(s) {
		return fmt.Errorf("%q: write the checksum in lower case", s)
	}
	return nil
}

func regionList(val cty.Value) ([]string, error) {
	t := val.Type()
	if val.IsNull() || !(t.IsTupleType() || t.IsListType()) {
		return nil, errors.New(`want a list of region slugs, like ["nyc3", "fra1"]`)
	}
	var out []string
	for it := val.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() || !e.Type().Equals(cty.String) || !regionRE.MatchString(e.AsString()) {
			return nil, fmt.Errorf("%s is not a region slug like nyc3", e.GoString())
		}
		if slices.Contains(out, e.AsString()) {
			return nil, fmt.Errorf("region %s is listed twice", e.AsString())
		}
		out = append(out, e.AsString())
	}
	if len(out) == 0 {
		return nil, errors.New("the list is empty: name at least the build region")
	}
	return out, nil
}
