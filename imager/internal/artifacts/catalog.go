package artifacts

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/codelab-app/infra/imager/versions"
)

// Kind says how a downloaded artifact is packaged upstream.
type Kind string

// Artifact kinds.
const (
	KindZip    Kind = "zip"
	KindTarGz  Kind = "tar.gz"
	KindBinary Kind = "binary"
)

// Source says where an artifact comes from.
type Source string

// Sources.
const (
	// SourceVendor: the vendor's release download, checked against a pinned SHA-256.
	SourceVendor Source = "vendor"
	// SourceLocal: a file from --local-artifacts (the local DigitalOcean, which has no
	// internet), its checksum computed here. Such a build says so in its output and tags.
	SourceLocal Source = "local"
	// SourceGoModule: built by the imager from a Go module pinned with its go.sum.
	SourceGoModule Source = "go-module"
	// SourceApt: installed on the build droplet from Docker's apt repository.
	SourceApt Source = "apt"
)

// Spec describes one artifact. {version} in URL, FileName and Dest is replaced by the
// pinned version.
type Spec struct {
	Name       string
	Source     Source
	VersionVar string
	SHA256Var  string // SourceVendor
	URL        string // SourceVendor
	FileName   string
	Kind       Kind
	Member     string // the file inside a zip or tar.gz
	Dest       string // path inside the payload
	LocalName  string // file name looked up in a local artifacts folder
	Module     string // SourceGoModule: the module path
	ToolDir    string // SourceGoModule: the folder of the pinning module (go.mod + go.sum)
	Package    string // SourceApt: the apt package name
}

// LocalOverrideFile, in a --local-artifacts folder, overrides variables of the versions
// file (the local DigitalOcean's apt repository URL and test key fingerprint).
const LocalOverrideFile = "versions.local.pkrvars.hcl"

// DoctlToolDir pins doctl's module (go.mod + go.sum), relative to the repository.
const DoctlToolDir = "tools/doctl"

// Catalog lists every artifact the images need. Versions, checksums and the Docker key
// come from the versions file.
var Catalog = []Spec{
	{
		Name: "consul", Source: SourceVendor, VersionVar: "consul_version", SHA256Var: "consul_sha256",
		URL:      "https://releases.hashicorp.com/consul/{version}/consul_{version}_linux_amd64.zip",
		FileName: "consul_{version}_linux_amd64.zip", Kind: KindZip, Member: "consul",
		Dest: "bin/consul", LocalName: "consul",
	},
	{
		Name: "consul-template", Source: SourceVendor, VersionVar: "consul_template_version", SHA256Var: "consul_template_sha256",
		URL:      "https://releases.hashicorp.com/consul-template/{version}/consul-template_{version}_linux_amd64.zip",
		FileName: "consul-template_{version}_linux_amd64.zip", Kind: KindZip, Member: "consul-template",
		Dest: "bin/consul-template", LocalName: "consul-template",
	},
	{
		Name: "doctl", Source: SourceGoModule, VersionVar: "doctl_version",
		Module: "github.com/digitalocean/doctl", ToolDir: DoctlToolDir, Dest: "bin/doctl",
	},
	{Name: "docker-ce", Source: SourceApt, VersionVar: "docker_ce_version", Package: "docker-ce"},
	{Name: "docker-ce-cli", Source: SourceApt, VersionVar: "docker_ce_version", Package: "docker-ce-cli"},
	{Name: "containerd.io", Source: SourceApt, VersionVar: "containerd_version", Package: "containerd.io"},
	{Name: "docker-compose-plugin", Source: SourceApt, VersionVar: "docker_compose_plugin_version", Package: "docker-compose-plugin"},
}

// Artifact is a Spec resolved against the versions file (and a local folder).
type Artifact struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Source    Source `json:"source"`
	URL       string `json:"url,omitempty"`
	LocalPath string `json:"localPath,omitempty"`
	Module    string `json:"module,omitempty"`
	Package   string `json:"package,omitempty"`
	FileName  string `json:"fileName,omitempty"`
	// SHA256 is the pinned (vendor) or computed (local) checksum; for an apt package it
	// is empty (apt verifies it against the signed index).
	SHA256 string `json:"sha256,omitempty"`
	// Verified says how the artifact is verified, in words (never empty).
	Verified string `json:"verified"`
	Kind     Kind   `json:"kind,omitempty"`
	Member   string `json:"member,omitempty"`
	Dest     string `json:"dest,omitempty"`
	// KeyFingerprint is the key that must sign the apt repository (SourceApt).
	KeyFingerprint string `json:"keyFingerprint,omitempty"`
	toolDir        string
}

// ToolDir is the pinning module's folder of a SourceGoModule artifact.
func (a Artifact) ToolDir() string { return a.toolDir }

// Identity is what the image fingerprint records for the artifact: the checksum when
// there is one, else everything that decides which bytes the build gets.
func (a Artifact) Identity() string {
	if a.SHA256 != "" {
		return a.SHA256
	}
	return strings.Join([]string{string(a.Source), a.URL, a.Module, a.Package, a.Version, a.KeyFingerprint}, "|")
}

// Resolve turns specs into artifacts. When localDir is set, a vendor artifact whose
// LocalName exists there is taken from that file with its checksum computed (source
// "local"); everything else keeps the verification the versions file pins. v has been
// checked by versions.Parse, so every pin is present and well-formed.
func Resolve(v *versions.Versions, specs []Spec, localDir string) ([]Artifact, error) {
	var out []Artifact
	for _, s := range specs {
		version := v.Get(s.VersionVar)
		if version == "" {
			return nil, fmt.Errorf("artifact %s: %s is not set in %s", s.Name, s.VersionVar, v.Path)
		}
		expand := func(t string) string { return strings.ReplaceAll(t, "{version}", version) }
		a := Artifact{Name: s.Name, Version: version, Source: s.Source, Kind: s.Kind, Member: s.Member, Dest: expand(s.Dest)}
		switch s.Source {
		case SourceVendor:
			a.URL, a.FileName = expand(s.URL), expand(s.FileName)
			if localDir != "" && s.LocalName != "" {
				p := filepath.Join(localDir, expand(s.LocalName))
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					sum, err := HashFile(p)
					if err != nil {
						return nil, fmt.Errorf("artifact %s: %w", s.Name, err)
					}
					a.Source, a.LocalPath, a.URL, a.SHA256 = SourceLocal, p, "", sum
					a.Kind, a.Member = KindBinary, ""
					a.Verified = "local stand-in (--local-artifacts): SHA-256 computed here, not pinned"
					out = append(out, a)
					continue
				}
			}
			sum := v.Get(s.SHA256Var)
			if sum == "" {
				return nil, fmt.Errorf("artifact %s %s: no SHA-256 pinned (%s in %s); refusing to use an unverified download",
					s.Name, version, s.SHA256Var, v.Path)
			}
			a.SHA256 = sum
			a.Verified = fmt.Sprintf("SHA-256 pinned in %s (%s)", versions.File, s.SHA256Var)
		case SourceGoModule:
			a.Module, a.toolDir = s.Module, s.ToolDir
			a.Verified = fmt.Sprintf("built from Go module %s v%s; go.sum in %s (Go checksum database)", s.Module, version, s.ToolDir)
		case SourceApt:
			a.Package, a.URL = s.Package, v.Get("docker_apt_url")
			a.KeyFingerprint = v.Get("docker_apt_key_fingerprint")
			if a.URL == "" || a.KeyFingerprint == "" {
				return nil, fmt.Errorf("artifact %s: docker_apt_url and docker_apt_key_fingerprint must be set in %s", s.Name, v.Path)
			}
			a.Verified = fmt.Sprintf("apt: repository InRelease signed by key %s (fingerprint checked on the droplet before any install), package checked against the signed index", a.KeyFingerprint)
		default:
			return nil, fmt.Errorf("artifact %s: unknown source %q", s.Name, s.Source)
		}
		out = append(out, a)
	}
	return out, nil
}
