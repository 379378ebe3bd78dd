package images

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// Input is one input of an image build: a path relative to the repository (or a
// synthetic name such as "artifact/consul") and the SHA-256 of its content.
type Input struct {
	Path   string
	SHA256 string
}

// FingerprintLen is how many hex digits of the fingerprint are stored on a snapshot.
const FingerprintLen = 32

// Fingerprint is the SHA-256 over the sorted (path, sha256) list of every input, cut to
// FingerprintLen hex digits. The order inputs are given in does not matter.
func Fingerprint(inputs []Input) string {
	sorted := append([]Input(nil), inputs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := sha256.New()
	for _, in := range sorted {
		fmt.Fprintf(h, "%s\x00%s\n", in.Path, in.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:FingerprintLen]
}

// TagValue makes s usable in a DigitalOcean tag: characters other than letters, digits,
// '-', '_' and ':' become '_'.
func TagValue(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == ':':
			return r
		}
		return '_'
	}, s)
}

// Tags are the tags stored on a new snapshot: family, fingerprint, agent version, git
// commit, each apt package's installed version (packages, by name) and, for a
// --local-artifacts build, TagLocalArtifacts.
func Tags(family, fingerprint, agentVersion, gitSHA string, packages map[string]string, local bool) []string {
	t := []string{
		TagFamily + TagValue(family),
		TagFingerprint + fingerprint,
		TagAgent + TagValue(agentVersion),
		TagGit + TagValue(gitSHA),
	}
	names := make([]string, 0, len(packages))
	for n := range packages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t = append(t, TagPackage+TagValue(n)+":"+TagValue(packages[n]))
	}
	if local {
		t = append(t, TagLocalArtifacts)
	}
	for i := range t {
		if len(t[i]) > 255 {
			t[i] = t[i][:255]
		}
	}
	return t
}

// ServiceTags are the extra tags of a service image: the services base fingerprint it
// was built on, the application version, and each baked image's digest (digests, by
// repository name).
func ServiceTags(baseFingerprint, appVersion string, digests map[string]string) []string {
	t := []string{TagBaseFingerprint + baseFingerprint, TagAppVersion + TagValue(appVersion)}
	names := make([]string, 0, len(digests))
	for n := range digests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t = append(t, TagAppImage+TagValue(n)+":"+TagValue(digests[n]))
	}
	for i := range t {
		if len(t[i]) > 255 {
			t[i] = t[i][:255]
		}
	}
	return t
}
