package suite

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/bootbench"
	"github.com/codelab-app/infra/e2e/internal/cluster"
)

// bootBenchmark runs the boot benchmark on the running cluster, prints the
// four times and their ratios, and fails when a target is missed.
func bootBenchmark(ctx context.Context, t testing.TB, c *cluster.Cluster) bootbench.Result {
	b := &bootbench.Bench{C: c, Opts: bootbench.Options{Out: writer{t}}}
	defer func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("remove the benchmark's droplets and snapshot: %v", err)
		}
	}()
	r, err := b.Run(ctx)
	if err != nil {
		t.Fatalf("boot benchmark: %v", err)
	}
	r.Print(writer{t})
	for _, m := range r.Misses() {
		t.Errorf("boot benchmark: %s", m)
	}
	return r
}

// BenchmarkBoot is `make bench-boot`: it brings the demo cluster up (or
// reuses it) and measures boot-to-ready four ways (see package bootbench).
func BenchmarkBoot(b *testing.B) {
	if os.Getenv("CODELAB_E2E") != "1" {
		b.Skip("boot benchmark: set CODELAB_E2E=1 (make bench-boot does); it boots droplets on the local DigitalOcean")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	repo := os.Getenv("CODELAB_E2E_REPO")
	if repo == "" {
		repo = repoRoot(nil)
	}
	o := cluster.Options{Repo: repo, BinDir: os.Getenv("CODELAB_E2E_BIN"), Instance: "demo", Out: writer{b}}
	c, err := cluster.Up(ctx, o)
	if err != nil {
		b.Fatalf("cluster up: %v", err)
	}
	for range b.N {
		r := bootBenchmark(ctx, b, c)
		b.ReportMetric(r.OldWay.Total.Seconds(), "old-way-s")
		b.ReportMetric(r.Pulling.Total.Seconds(), "pulling-s")
		b.ReportMetric(r.Baked.Total.Seconds(), "baked-s")
		b.ReportMetric(r.Reboot.Total.Seconds(), "reboot-s")
		b.ReportMetric(r.Ratio(r.Pulling), "pulling/old")
		b.ReportMetric(r.Ratio(r.Baked), "baked/old")
		b.ReportMetric(r.Ratio(r.Reboot), "reboot/old")
		b.ReportMetric(r.Baked.CPU.Seconds(), "agent-cpu-s")
	}
}
