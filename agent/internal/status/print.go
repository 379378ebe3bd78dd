package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/codelab-app/infra/agent/internal/boot"
)

// Format is how a report is printed.
type Format int

const (
	Plain Format = iota // one fact per line, for logs and pipes
	Table               // aligned columns, for a terminal
	JSON                // --json
)

// Write prints r.
func Write(w io.Writer, r Report, f Format) error {
	switch f {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // hints hold <value>; keep them readable
		return enc.Encode(r)
	case Table:
		return writeTable(w, r)
	default:
		return writePlain(w, r)
	}
}

func ms(d int64) string {
	return (time.Duration(d) * time.Millisecond).Round(10 * time.Millisecond).String()
}

// imageBytes is how much of an image was downloaded, in SI units as
// registries count them: "123 MB / 300 MB (41%)", or "123 MB" while the
// total is unknown, or "-" when nothing was downloaded (a present image).
func imageBytes(i boot.ImageState) string {
	switch {
	case i.Total > 0:
		return fmt.Sprintf("%s / %s (%d%%)", humanize.Bytes(uint64(max(i.Current, 0))), humanize.Bytes(uint64(i.Total)), max(i.Current, 0)*100/i.Total)
	case i.Current > 0:
		return humanize.Bytes(uint64(i.Current))
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writePlain(w io.Writer, r Report) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("status: %s", r.Overall)
	p("summary: %s", r.Summary)
	p("role: %s", orDash(r.Role))
	p("droplet: %s", orDash(r.DropletID))
	p("image: %s", orDash(r.Image))
	p("agent: %s", r.AgentVersion)
	if b := r.Boot; b != nil {
		p("boot: %s in %s (started %s)", b.Result, ms(b.DurationMS), b.StartedAt.Format(time.RFC3339))
		for _, s := range b.Steps {
			line := fmt.Sprintf("step %s: %s %s", s.Name, s.Result, ms(s.DurationMS))
			if s.Detail != "" {
				line += " (" + s.Detail + ")"
			}
			p("%s", line)
		}
		for _, i := range b.Images {
			p("image %s: %s %s %s", i.Ref, i.Result, orDash(i.Digest), imageBytes(i))
		}
	}
	for _, u := range r.Units {
		p("unit %s: %s (%s)", u.Unit, u.ActiveState, u.SubState)
	}
	if r.UnitsError != "" {
		p("units: unreachable: %s", r.UnitsError)
	}
	c := r.Consul
	if c.Reachable {
		p("consul: member=%t leader=%s members=%d servers=%s", c.Member, orDash(c.Leader), c.Members, orDash(strings.Join(c.Servers, ",")))
	} else {
		p("consul: unreachable: %s", c.Error)
	}
	for _, ct := range r.Containers {
		p("container %s: %s %s %s", ct.Name, ct.State, orDash(ct.Health), orDash(ct.ImageDigest))
	}
	if r.Backup != nil {
		p("backup: %s", r.Backup.Line())
	}
	if r.DockerErr != "" {
		p("containers: unreachable: %s", r.DockerErr)
	}
	for _, pr := range r.Problems {
		p("problem %s: %s", pr.What, pr.Error)
		if pr.Hint != "" {
			p("  investigate: %s", pr.Hint)
		}
	}
	return nil
}

func writeTable(w io.Writer, r Report) error {
	fmt.Fprintf(w, "%s  %s\n\n", strings.ToUpper(r.Overall), r.Summary)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "role\t%s\ndroplet\t%s\nimage\t%s\nagent\t%s\n", orDash(r.Role), orDash(r.DropletID), orDash(r.Image), r.AgentVersion)
	if b := r.Boot; b != nil {
		fmt.Fprintf(tw, "boot\t%s in %s\n", b.Result, ms(b.DurationMS))
	}
	tw.Flush()
	if b := r.Boot; b != nil && len(b.Steps) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STEP\tKIND\tRESULT\tTOOK\tDETAIL")
		for _, s := range b.Steps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.Result, ms(s.DurationMS), s.Detail)
		}
		tw.Flush()
	}
	if b := r.Boot; b != nil && len(b.Images) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "IMAGE\tRESULT\tDOWNLOADED\tDIGEST")
		for _, i := range b.Images {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", i.Ref, i.Result, imageBytes(i), orDash(i.Digest))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tACTIVE\tSUB")
	for _, u := range r.Units {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Unit, u.ActiveState, u.SubState)
	}
	if r.UnitsError != "" {
		fmt.Fprintf(tw, "?\tunreachable\t%s\n", r.UnitsError)
	}
	tw.Flush()
	c := r.Consul
	fmt.Fprintln(w)
	if c.Reachable {
		fmt.Fprintf(w, "consul: member %t, leader %s, %d members, servers %s\n", c.Member, orDash(c.Leader), c.Members, orDash(strings.Join(c.Servers, ", ")))
	} else {
		fmt.Fprintf(w, "consul: unreachable: %s\n", c.Error)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tSTATE\tHEALTH\tIMAGE DIGEST")
	for _, ct := range r.Containers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ct.Name, ct.State, orDash(ct.Health), orDash(ct.ImageDigest))
	}
	if r.DockerErr != "" {
		fmt.Fprintf(tw, "?\tunreachable\t\t%s\n", r.DockerErr)
	}
	tw.Flush()
	if r.Backup != nil {
		fmt.Fprintf(w, "\nbackup: %s\n", r.Backup.Line())
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w)
		for _, pr := range r.Problems {
			fmt.Fprintf(w, "! %s: %s\n", pr.What, pr.Error)
			if pr.Hint != "" {
				fmt.Fprintf(w, "  investigate: %s\n", pr.Hint)
			}
		}
	}
	return nil
}

// StepResult is a convenience for tests and callers: the named step's
// result in the report's boot, or "".
func (r Report) StepResult(name string) boot.Result {
	if r.Boot == nil {
		return ""
	}
	s, _ := r.Boot.Step(name)
	return s.Result
}

// ProgressLine is one line saying where a boot in progress stands: the
// summary, and for images being pulled the bytes against the total.
func ProgressLine(r Report) string {
	line := r.Summary
	if r.Boot == nil {
		return line
	}
	for _, i := range r.Boot.Images {
		if i.Result != "pulling" || i.Total == 0 {
			continue
		}
		line += fmt.Sprintf("; %s %s", i.Ref, imageBytes(i))
	}
	return line
}
