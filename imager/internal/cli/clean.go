package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/codelab-app/infra/imager/internal/images"
	"github.com/codelab-app/infra/internal/exitcode"
	"github.com/spf13/cobra"
)

// CleanOptions are `imager clean-images`' inputs.
type CleanOptions struct {
	*Globals
	Keep   int
	DryRun bool
	JSON   bool
}

func newCleanCmd(g *Globals) *cobra.Command {
	o := &CleanOptions{Globals: g}
	cmd := &cobra.Command{
		Use:   "clean-images [--keep 3] [--dry-run]",
		Short: "Delete old snapshots: per image family keep the newest --keep and every one a droplet uses",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunClean(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.Keep, "keep", 3, "snapshots to keep per image family (besides those in use)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print the plan, delete nothing")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the plan as JSON")
	return cmd
}

// CleanOutput is clean-images' JSON.
type CleanOutput struct {
	SchemaVersion int               `json:"schemaVersion"`
	Keep          int               `json:"keep"`
	DryRun        bool              `json:"dryRun"`
	Plan          []images.Decision `json:"plan"`
	Deleted       []int             `json:"deleted"`
	Errors        []string          `json:"errors"`
}

// RunClean prints the retention plan and, unless DryRun, deletes what it marks.
func RunClean(ctx context.Context, o *CleanOptions) error {
	if o.Keep < 1 {
		return exitcode.UsageError("--keep must be at least 1, got %d", o.Keep)
	}
	api, _, err := o.api(ctx)
	if err != nil {
		return err
	}
	snaps, err := images.List(ctx, api)
	if err != nil {
		return err
	}
	plan := images.Plan(snaps, o.Keep)
	out := CleanOutput{SchemaVersion: SchemaVersion, Keep: o.Keep, DryRun: o.DryRun, Plan: plan, Deleted: []int{}, Errors: []string{}}
	if !o.JSON {
		printPlan(o, plan)
	}
	var errs []error
	if !o.DryRun {
		for _, d := range plan {
			if !d.Delete {
				continue
			}
			if err := api.DeleteImage(ctx, d.Snapshot.ID); err != nil {
				errs = append(errs, err)
				out.Errors = append(out.Errors, err.Error())
				if !o.JSON {
					fmt.Fprintf(o.Stdout, "FAILED to delete %d %s: %v\n", d.Snapshot.ID, d.Snapshot.Name, err)
				}
				continue
			}
			out.Deleted = append(out.Deleted, d.Snapshot.ID)
			o.logger().Info("deleted snapshot", "id", d.Snapshot.ID, "name", d.Snapshot.Name)
			if !o.JSON {
				fmt.Fprintf(o.Stdout, "deleted %d %s\n", d.Snapshot.ID, d.Snapshot.Name)
			}
		}
	}
	if o.JSON {
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("clean-images: %d deletion(s) failed: %w", len(errs), errors.Join(errs...))
	}
	return nil
}

func printPlan(o *CleanOptions, plan []images.Decision) {
	if len(plan) == 0 {
		fmt.Fprintln(o.Stdout, "no codelab snapshots")
		return
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tID\tNAME\tFAMILY\tCREATED\tREASON")
	del, keep := 0, 0
	for _, d := range plan {
		action := "keep"
		if d.Delete {
			action = "delete"
			del++
		} else {
			keep++
		}
		s := d.Snapshot
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", action, s.ID, s.Name, dash(s.Family), created(s.Created), d.Reason)
	}
	tw.Flush()
	fmt.Fprintf(o.Stdout, "plan: keep %d, delete %d of %d snapshot(s) (newest %d per family plus those in use)\n", keep, del, len(plan), o.Keep)
	if o.DryRun {
		fmt.Fprintln(o.Stdout, "dry run: nothing deleted")
	}
}
