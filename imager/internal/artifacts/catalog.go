package artifacts

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Kind says how an artifact is packaged upstream.
type Kind string

// Artifact kinds.
const (
	KindZip    Kind = "zip"
	KindTarGz  Kind = "tar.gz"
	KindBinary Kind = "binary"
	KindDeb    Kind = "deb"
)

// Source says where an artifact comes from.
type Source string

// Sources: the vendor's pinned URL, or a local file (test builds for the local
// DigitalOcean, which has no internet).
const (
	SourceVendor Source = "vendor"
	SourceLocal  Source = "local"
)

// Spec describes one artifact. {version} in URL, FileName and Dest is replaced by the
// pinned version; {file} in Dest by the file name.
type Spec struct {
	Name       string
	VersionVar string
	SHA256Var  string
	URL        string
	FileName   string
	Kind       Kind
	Member     string // the file inside a zip or tar.gz
	Dest       string // path inside the payload
	LocalName  string // file name looked up in a local artifacts folder
}

// Catalog lists every artifact the images need. Versions and checksums come from the
// versions file; URLs are the vendors' release downloads.
var Catalog = []Spec{
	{
		Name: "consul", VersionVar: "consul_version", SHA256Var: "consul_sha256",
		URL:      "https://releases.hashicorp.com/consul/{version}/consul_{version}_linux_amd64.zip",
		FileName: "consul_{version}_linux_amd64.zip", Kind: KindZip, Member: "consul",
		Dest: "bin/consul", LocalName: "consul",
	},
	{
		Name: "consul-template", VersionVar: "consul_template_version", SHA256Var: "consul_template_sha256",
		URL:      "https://releases.hashicorp.com/consul-template/{version}/consul-template_{version}_linux_amd64.zip",
		FileName: "consul-template_{version}_linux_amd64.zip", Kind: KindZip, Member: "consul-template",
		Dest: "bin/consul-template", LocalName: "consul-template",
	},
	{
		Name: "docker-compose", VersionVar: "compose_version", SHA256Var: "compose_sha256",
		URL:      "https://github.com/docker/compose/releases/download/v{version}/docker-compose-linux-x86_64",
		FileName: "docker-compose-linux-x86_64", Kind: KindBinary,
		Dest: "bin/docker-compose", LocalName: "docker-compose",
	},
	{
		Name: "doctl", VersionVar: "doctl_version", SHA256Var: "doctl_sha256",
		URL:      "https://github.com/digitalocean/doctl/releases/download/v{version}/doctl-{version}-linux-amd64.tar.gz",
		FileName: "doctl-{version}-linux-amd64.tar.gz", Kind: KindTarGz, Member: "doctl",
		Dest: "bin/doctl", LocalName: "doctl",
	},
	{
		Name: "docker-ce", VersionVar: "docker_ce_version", SHA256Var: "docker_ce_sha256",
		URL:      "https://download.docker.com/linux/debian/dists/bookworm/pool/stable/amd64/docker-ce_{version}_amd64.deb",
		FileName: "docker-ce_{version}_amd64.deb", Kind: KindDeb,
		Dest: "debs/{file}", LocalName: "docker-ce_{version}_amd64.deb",
	},
	{
		Name: "docker-ce-cli", VersionVar: "docker_ce_version", SHA256Var: "docker_ce_cli_sha256",
		URL:      "https://download.docker.com/linux/debian/dists/bookworm/pool/stable/amd64/docker-ce-cli_{version}_amd64.deb",
		FileName: "docker-ce-cli_{version}_amd64.deb", Kind: KindDeb,
		Dest: "debs/{file}", LocalName: "docker-ce-cli_{version}_amd64.deb",
	},
	{
		Name: "containerd.io", VersionVar: "containerd_version", SHA256Var: "containerd_sha256",
		URL:      "https://download.docker.com/linux/debian/dists/bookworm/pool/stable/amd64/containerd.io_{version}_amd64.deb",
		FileName: "containerd.io_{version}_amd64.deb", Kind: KindDeb,
		Dest: "debs/{file}", LocalName: "containerd.io_{version}_amd64.deb",
	},
}

// Artifact is a Spec resolved against the versions file (and a local folder).
type Artifact struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Source    Source `json:"source"`
	URL       string `json:"url,omitempty"`
	LocalPath string `json:"localPath,omitempty"`
	FileName  string `json:"fileName"`
	SHA256    string `json:"sha256"`
	Kind      Kind   `json:"kind"`
	Member    string `json:"member,omitempty"`
	Dest      string `json:"dest"`
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Resolve turns specs into artifacts. When localDir is set, an artifact whose LocalName
// exists there is taken from that file with its checksum computed (source "local");
// everything else must have a pinned, well-formed SHA-256 in the versions file, or
// Resolve refuses it with an error naming the artifact.
func Resolve(v Versions, specs []Spec, localDir string) ([]Artifact, error) {
	var out []Artifact
	for _, s := range specs {
		version, ok := v[s.VersionVar]
		if !ok || version == "" {
			return nil, fmt.Errorf("artifact %s: %s is not set in %s", s.Name, s.VersionVar, VersionsFile)
		}
		expand := func(t string) string { return strings.ReplaceAll(t, "{version}", version) }
		a := Artifact{
			Name: s.Name, Version: version, Source: SourceVendor, URL: expand(s.URL),
			FileName: expand(s.FileName), Kind: s.Kind, Member: s.Member,
		}
		a.Dest = strings.ReplaceAll(expand(s.Dest), "{file}", a.FileName)
		if localDir != "" && s.LocalName != "" {
			p := filepath.Join(localDir, expand(s.LocalName))
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				sum, err := HashFile(p)
				if err != nil {
					return nil, fmt.Errorf("artifact %s: %w", s.Name, err)
				}
				a.Source, a.LocalPath, a.URL, a.SHA256 = SourceLocal, p, "", sum
				if s.Kind != KindDeb {
					a.Kind, a.Member = KindBinary, ""
				}
				out = append(out, a)
				continue
			}
		}
		sum := strings.ToLower(v[s.SHA256Var])
		if sum == "" {
			return nil, fmt.Errorf("artifact %s %s: no SHA-256 pinned (%s is empty in %s); refusing to use an unverified download",
				s.Name, version, s.SHA256Var, VersionsFile)
		}
		if !sha256Hex.MatchString(sum) {
			return nil, fmt.Errorf("artifact %s %s: %s in %s is not a SHA-256 (64 hex digits): %q",
				s.Name, version, s.SHA256Var, VersionsFile, sum)
		}
		a.SHA256 = sum
		out = append(out, a)
	}
	return out, nil
}
