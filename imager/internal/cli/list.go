package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/spf13/cobra"
)

// SchemaVersion versions the --json output of list-images and clean-images.
const SchemaVersion = 1

// ListOptions are `imager list-images`' inputs.
type ListOptions struct {
	*Globals
	JSON bool
}

func newListCmd(g *Globals) *cobra.Command {
	o := &ListOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "list-images [--json]",
		Short: "List every codelab snapshot with its fingerprint and whether a droplet uses it",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunList(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

// ListOutput is list-images' JSON.
type ListOutput struct {
	SchemaVersion int               `json:"schemaVersion"`
	Images        []images.Snapshot `json:"images"`
}

// RunList prints every codelab snapshot.
func RunList(ctx context.Context, o *ListOptions) error {
	api, _, err := o.api(ctx)
	if err != nil {
		return err
	}
	snaps, err := images.List(ctx, api)
	if err != nil {
		return err
	}
	if o.JSON {
		if snaps == nil {
			snaps = []images.Snapshot{}
		}
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ListOutput{SchemaVersion: SchemaVersion, Images: snaps})
	}
	if len(snaps) == 0 {
		fmt.Fprintln(o.Stdout, "no codelab snapshots")
		return nil
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tFAMILY\tCREATED\tSIZE\tREGIONS\tFINGERPRINT\tPACKAGES\tBAKES\tIN USE")
	for _, s := range snaps {
		name := s.Name
		if s.LocalArtifacts {
			name += " (local-artifacts)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, name, dash(s.Family),
			created(s.Created), fmt.Sprintf("%.2f GB", s.SizeGB), dash(strings.Join(s.Regions, ",")),
			dash(s.Fingerprint), dash(packages(s.Packages)), dash(bakes(s)), inUse(s))
	}
	return tw.Flush()
}

// packages is "name=version,..." sorted by name.
func packages(p map[string]string) string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(p)) {
		out = append(out, n+"="+p[n])
	}
	return strings.Join(out, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bakes is a service image's application version and images: "v1 api@sha256:0123456789ab".
func bakes(s images.Snapshot) string {
	if s.AppVersion == "" && len(s.AppImages) == 0 {
		return ""
	}
	parts := []string{dash(s.AppVersion)}
	for _, n := range slices.Sorted(maps.Keys(s.AppImages)) {
		d := s.AppImages[n]
		if len(d) > len("sha256:")+12 {
			d = d[:len("sha256:")+12]
		}
		parts = append(parts, n+"@"+d)
	}
	return strings.Join(parts, " ")
}

func created(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func inUse(s images.Snapshot) string {
	if !s.InUse() {
		return "no"
	}
	var names []string
	for _, d := range s.UsedBy {
		names = append(names, d.Name)
	}
	return "yes (" + strings.Join(names, ", ") + ")"
}
