package backup

import (
	"context"
	"testing"
)

func TestRunReportsUploadAndReadBackProgress(t *testing.T) {
	store := newMemStore()
	r := testRunner(t, fakeDB(t), store, t0)
	var got []Transfer
	r.Progress = func(tr Transfer) { got = append(got, tr) }
	res, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, o := range mustList(t, store) {
		total += o.Size
	}
	if total <= res.SizeBytes {
		t.Fatalf("bucket holds %d bytes, backup %d: the manifest is missing", total, res.SizeBytes)
	}
	phases := map[string][]int64{}
	var order []string
	for _, tr := range got {
		if tr.Total != total {
			t.Fatalf("%+v: total is not the backup's %d bytes (files and manifest)", tr, total)
		}
		if len(order) == 0 || order[len(order)-1] != tr.Phase {
			order = append(order, tr.Phase)
		}
		phases[tr.Phase] = append(phases[tr.Phase], tr.Done)
	}
	if len(order) != 2 || order[0] != PhaseUpload || order[1] != PhaseReadBack {
		t.Fatalf("phases in order %v, want upload then read-back", order)
	}
	for phase, done := range phases {
		if done[0] != 0 || done[len(done)-1] != total || len(done) < 3 {
			t.Errorf("%s: progress %v, want from 0 to %d in steps", phase, done, total)
		}
		for i := 1; i < len(done); i++ {
			if done[i] < done[i-1] {
				t.Errorf("%s: progress went back: %v", phase, done)
			}
		}
	}
}

func mustList(t *testing.T, s Store) []Object {
	t.Helper()
	objs, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
