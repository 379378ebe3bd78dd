package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/codelab-app/infra/imager/internal/artifacts"
	"github.com/codelab-app/infra/imager/internal/registry"
	"github.com/codelab-app/infra/imager/versions"
)

// PlanOutput is `imager build --plan --json`.
type PlanOutput struct {
	SchemaVersion  int                  `json:"schemaVersion"`
	LocalArtifacts bool                 `json:"localArtifacts"`
	VersionsFile   string               `json:"versionsFile"`
	Override       string               `json:"override,omitempty"`
	BaseImage      string               `json:"baseImage"`
	BuildRegion    string               `json:"buildRegion"`
	Regions        []string             `json:"regions"`
	AgentVersion   string               `json:"agentVersion"`
	GitSHA         string               `json:"gitSha"`
	Images         []PlanImage          `json:"images"`
	Artifacts      []artifacts.Artifact `json:"artifacts"`
}

// PlanImage is one image of the plan.
type PlanImage struct {
	Family      string `json:"family"`
	Fingerprint string `json:"fingerprint"`
	// Action is build, up-to-date (a snapshot has the fingerprint), rebuild (--force) or
	// unknown (no token: the snapshots were not listed).
	Action   string `json:"action"`
	Snapshot string `json:"snapshot,omitempty"`
	// Dependency: the services base, planned because a service image builds on it.
	Dependency bool `json:"dependency,omitempty"`
	// Service images: the base they build on (family and fingerprint), the registry and
	// version they bake, each image with its digest, or why they could not be resolved.
	Base            string           `json:"base,omitempty"`
	BaseFingerprint string           `json:"baseFingerprint,omitempty"`
	Registry        string           `json:"registry,omitempty"`
	AppVersion      string           `json:"appVersion,omitempty"`
	Baked           []registry.Image `json:"bakedImages,omitempty"`
	ResolveError    string           `json:"resolveError,omitempty"`
}

func (b *build) plan() PlanOutput {
	p := PlanOutput{
		SchemaVersion: SchemaVersion, LocalArtifacts: b.local, VersionsFile: versions.File, Override: b.override,
		BaseImage: BaseImage, BuildRegion: b.regions[0], Regions: b.regions,
		AgentVersion: b.version, GitSHA: b.sha, Artifacts: b.arts,
	}
	for _, ib := range b.builds {
		pi := PlanImage{Family: ib.Image.Family, Fingerprint: ib.Fingerprint, Action: "build", Dependency: ib.Dependency}
		if ib.Image.IsService() {
			pi.Base, pi.BaseFingerprint = ib.Base.Image.Family, ib.Base.Fingerprint
			pi.Registry, pi.AppVersion = b.registryPath(), b.appVersion()
			if ib.Baked != nil {
				pi.Baked = ib.Baked.Images
			}
		}
		switch {
		case ib.ResolveErr != nil:
			pi.Action, pi.ResolveError = "unresolved", ib.ResolveErr.Error()
		case b.api == nil:
			pi.Action = "unknown"
		case ib.Existing != nil && b.o.Force:
			pi.Action, pi.Snapshot = "rebuild", ib.Existing.Name
		case ib.Existing != nil:
			pi.Action, pi.Snapshot = "up-to-date", ib.Existing.Name
		case ib.Dependency:
			pi.Action = "build (the service images build on it)"
		}
		p.Images = append(p.Images, pi)
	}
	return p
}

// printPlan prints what a build would do, as a table or JSON.
func (b *build) printPlan() error {
	p := b.plan()
	if b.o.JSON {
		enc := json.NewEncoder(b.o.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	w := b.o.Stdout
	if p.LocalArtifacts {
		fmt.Fprintf(w, "LOCAL-ARTIFACTS BUILD (stand-ins; overrides from %s): not a production image\n", dash(p.Override))
	}
	fmt.Fprintf(w, "base image %s, build region %s, snapshot regions %s\n", p.BaseImage, p.BuildRegion, strings.Join(p.Regions, ","))
	fmt.Fprintf(w, "codelab-agent %s (git %s)\n\n", p.AgentVersion, p.GitSHA)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tFINGERPRINT\tACTION")
	for _, im := range p.Images {
		action := im.Action
		if im.Snapshot != "" {
			action += " (" + im.Snapshot + ")"
		}
		if im.Action == "unknown" {
			action = "build unless a snapshot has the fingerprint (no token: snapshots not listed)"
		}
		if im.ResolveError != "" {
			action = "unresolved: " + im.ResolveError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", im.Family, dash(im.Fingerprint), action)
	}
	baked := false
	for _, im := range p.Images {
		for _, bi := range im.Baked {
			if !baked {
				fmt.Fprintln(tw)
				fmt.Fprintln(tw, "IMAGE\tBASE\tBAKES\tDIGEST")
				baked = true
			}
			fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\n", im.Family, im.Base, im.BaseFingerprint, bi.Ref, bi.Digest)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ARTIFACT\tVERSION\tSOURCE\tVERIFIED BY")
	for _, a := range p.Artifacts {
		src := string(a.Source)
		switch a.Source {
		case artifacts.SourceVendor:
			src = a.URL
		case artifacts.SourceLocal:
			src = "local: " + a.LocalPath
		case artifacts.SourceGoModule:
			src = "go module " + a.Module
		case artifacts.SourceApt:
			src = "apt " + a.Package + " from " + a.URL
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, a.Version, src, a.Verified)
	}
	return tw.Flush()
}
