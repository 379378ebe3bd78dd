package boot

import (
	"testing"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// OnChange sees every saved state, in order, including the final one.
func TestRecorderOnChange(t *testing.T) {
	rec := NewRecorder(fsutil.Root{Dir: t.TempDir()}, State{Role: "api"})
	var seen []string
	rec.OnChange = func(s State) { seen = append(seen, s.Result+":"+s.Status) }
	_ = rec.Update(func(s *State) { s.Status = "render" })
	rec.Finish(nil)
	if len(seen) != 2 || seen[0] != "booting:render" || seen[1][:6] != "ready:" {
		t.Fatalf("OnChange saw %q", seen)
	}
}
