package images

import (
	"fmt"
	"strings"
)

// Decision is what retention does with one snapshot.
type Decision struct {
	Snapshot Snapshot `json:"snapshot"`
	Delete   bool     `json:"delete"`
	Reason   string   `json:"reason"`
}

// Plan keeps, per image family, the newest keep snapshots and every snapshot a live
// droplet was created from; it deletes the rest. Snapshots without a recognised family
// are kept. The result follows Sort's order.
func Plan(snaps []Snapshot, keep int) []Decision {
	sorted := append([]Snapshot(nil), snaps...)
	Sort(sorted)
	rank := map[string]int{}
	out := make([]Decision, 0, len(sorted))
	for _, s := range sorted {
		d := Decision{Snapshot: s}
		switch {
		case s.Family == "":
			d.Reason = "name does not follow codelab-<family>-YYYY-MM-DD-HHMM"
		case rank[s.Family] < keep:
			rank[s.Family]++
			d.Reason = fmt.Sprintf("newest %d", keep)
			if s.InUse() {
				d.Reason += "; in use by " + users(s)
			}
		case s.InUse():
			d.Reason = "in use by " + users(s)
		default:
			d.Delete = true
			d.Reason = fmt.Sprintf("older than the newest %d", keep)
		}
		out = append(out, d)
	}
	return out
}

func users(s Snapshot) string {
	var parts []string
	for _, d := range s.UsedBy {
		parts = append(parts, fmt.Sprintf("%s (%d)", d.Name, d.ID))
	}
	return "droplet " + strings.Join(parts, ", ")
}
