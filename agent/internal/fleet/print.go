package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON prints the view as JSON (it carries schemaVersion).
func WriteJSON(w io.Writer, v View) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteTable prints one line per droplet, then what the marks mean.
func WriteTable(w io.Writer, v View) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSTATE\tIMAGE\tAGE\tAGENT\tSUMMARY")
	marked := false
	for _, d := range v.Droplets {
		image := dash(d.Image)
		if d.StaleImage {
			image += " (stale image)"
		}
		age := "-"
		if d.ImageCreated != nil {
			age = Age(v.At.Sub(*d.ImageCreated))
		}
		agent := dash(d.AgentVersion)
		if d.AgentDiffers {
			agent += " *"
			marked = true
		}
		node := d.Node
		if d.Env != "" {
			node = d.Env + "/" + d.Node
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", node, dash(d.Role), d.State, image, age, agent, oneLine(d.Summary))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	if marked {
		notes = append(notes, "* agent version differs from the majority ("+v.AgentMajority+")")
	}
	stale := map[string]int{}
	var newest []string
	for _, d := range v.Droplets {
		if d.StaleImage {
			if stale[d.NewestImage] == 0 {
				newest = append(newest, d.NewestImage)
			}
			stale[d.NewestImage]++
		}
	}
	sort.Strings(newest)
	for _, n := range newest {
		notes = append(notes, fmt.Sprintf("stale image: %d droplet(s) run an older snapshot than %s", stale[n], n))
	}
	src := "newest images from the DigitalOcean API"
	if v.ImagesFrom == FromRecords {
		src = "newest images judged from the records"
		if v.ImagesError != "" {
			src += " (" + v.ImagesError + ")"
		}
	}
	notes = append(notes, v.Summary+"; "+src)
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

// Age is a short, rounded duration: 40s, 12m, 5h, 3d.
func Age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
