package backup

import (
	"sort"
	"time"
)

// Retain splits complete backups into those to keep and those past
// retention: the newest backup of each of the newest keepDaily UTC days,
// the newest of each of the newest keepWeekly ISO weeks, and always the
// newest backup of all.
func Retain(backups []Listed, keepDaily, keepWeekly int) (keep, drop []Listed) {
	sorted := append([]Listed(nil), backups...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].At.After(sorted[j].At) })
	days := map[string]bool{}
	weeks := map[[2]int]bool{}
	for i, b := range sorted {
		t := b.At.UTC()
		day := t.Format(time.DateOnly)
		y, w := t.ISOWeek()
		week := [2]int{y, w}
		kept := i == 0
		if !days[day] && len(days) < keepDaily {
			days[day] = true
			kept = true
		}
		if !weeks[week] && len(weeks) < keepWeekly {
			weeks[week] = true
			kept = true
		}
		if kept {
			keep = append(keep, b)
		} else {
			drop = append(drop, b)
		}
	}
	return keep, drop
}
