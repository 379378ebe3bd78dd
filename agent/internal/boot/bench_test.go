package boot_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/boot"
	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/consul/consultest"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/codelab-app/infra/agent/internal/userdata"
	"github.com/codelab-app/infra/tools/testenv"
)

// BenchmarkBootThreeImages times the agent's boot path for a role with
// three images (Consul up and a leader, images pulled, compose up --wait),
// run by the boot runner with pulls overlapping the wait for Consul, against
// the same work done one thing after another (Consul, then `docker compose
// pull`, then `docker compose up -d --wait`), in the same run, and prints
// the ratio. Everything is local: a real Consul dev agent, real dockerd, and
// FROM scratch images in a local registry.
func BenchmarkBootThreeImages(b *testing.B) {
	testenv.Integration(b, "docker", "consul")
	ctx := context.Background()
	reg := testenv.StartRegistry(b)
	tag := fmt.Sprintf("b%d", time.Now().UnixNano())
	var refs []string
	for _, n := range []string{"api", "worker", "cron"} {
		ref := reg.Addr() + "/codelab-bench/" + n + ":" + tag
		testenv.PushImage(b, testenv.Image{Ref: ref, Pad: 24 << 20})
		refs = append(refs, ref)
	}
	var compose strings.Builder
	compose.WriteString("services:\n")
	for i, r := range refs {
		fmt.Fprintf(&compose, "  s%d:\n    image: %s\n    healthcheck: {test: [\"CMD\", \"/app\", \"healthcheck\"], interval: 1s, timeout: 2s, retries: 3}\n", i, r)
	}
	const project = "codelab-bench"
	root := fsutil.Root{Dir: b.TempDir()}
	file := render.ComposeFile(project)
	if _, err := root.WriteFile(file, []byte(compose.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	reset := func() {
		_, _ = testenv.Output(ctx, "docker", "compose", "-p", project, "-f", root.Path(file), "down", "-t", "1")
		for _, r := range refs {
			testenv.RemoveImage(b, r)
		}
	}
	b.Cleanup(reset)
	api, err := containers.NewClient()
	if err != nil {
		b.Fatal(err)
	}
	defer api.Close()

	var agentTotal, seqTotal time.Duration
	for i := 0; i < b.N; i++ {
		// The agent: consul-ready and pull-images overlap; compose-up needs both.
		reset()
		start := time.Now()
		consul := startConsulDev(b)
		facts := &boot.Facts{User: userdata.Config{Role: project, Join: userdata.Join{Addrs: []string{"127.0.0.1"}}},
			Files: []render.File{{Path: file, Data: []byte(compose.String()), Consumer: render.ConsumerCompose}}}
		plan := boot.Plan{
			{Step: &boot.ConsulReady{Facts: facts, Consul: consul, Timeout: time.Minute}, Kind: boot.EveryBoot},
			{Step: &boot.PullImages{Facts: facts, Puller: &containers.Puller{API: api}, Root: root}, Kind: boot.EveryBoot},
			{Step: &boot.ComposeUp{Facts: facts, Root: root, API: api, EnvTimeout: time.Minute, Timeout: 2 * time.Minute}, Kind: boot.EveryBoot,
				After: []string{boot.StepConsulReady, boot.StepPullImages}},
		}
		rec := boot.NewRecorder(fsutil.Root{Dir: b.TempDir()}, boot.State{StartedAt: start})
		if err := (&boot.Runner{Plan: plan, Events: rec}).Run(ctx); err != nil {
			b.Fatal(err)
		}
		agentTotal += time.Since(start)
		for _, s := range rec.Snapshot().Steps {
			b.Logf("agent step %s: started +%s, took %dms", s.Name, s.StartedAt.Sub(start).Round(time.Millisecond), s.DurationMS)
		}

		// Sequentially: Consul, then compose pull, then compose up --wait.
		reset()
		start = time.Now()
		consul = startConsulDev(b)
		if err := (&boot.ConsulReady{Facts: facts, Consul: consul, Timeout: time.Minute}).Run(ctx); err != nil {
			b.Fatal(err)
		}
		b.Logf("sequential consul ready +%s", time.Since(start).Round(time.Millisecond))
		for _, args := range [][]string{{"pull", "-q"}, {"up", "-d", "--wait"}} {
			cmd := append([]string{"compose", "-p", project, "-f", root.Path(file)}, args...)
			if out, err := exec.CommandContext(ctx, "docker", cmd...).CombinedOutput(); err != nil {
				b.Fatalf("docker %s: %v\n%s", strings.Join(cmd, " "), err, out)
			}
			b.Logf("sequential compose %s done +%s", args[0], time.Since(start).Round(time.Millisecond))
		}
		seqTotal += time.Since(start)
	}
	n := time.Duration(b.N)
	agent, seq := agentTotal/n, seqTotal/n
	ratio := float64(seq) / float64(agent)
	b.ReportMetric(agent.Seconds(), "agent-s")
	b.ReportMetric(seq.Seconds(), "sequential-s")
	b.ReportMetric(ratio, "speedup")
	fmt.Printf("boot, 3 images x 24 MiB: agent %s, sequential (consul, compose pull, compose up --wait) %s, ratio %.2fx\n",
		agent.Round(10*time.Millisecond), seq.Round(10*time.Millisecond), ratio)
}

// startConsulDev runs a real Consul dev agent on free loopback ports; it
// stops when the benchmark ends.
func startConsulDev(b *testing.B) consul.Client { return consultest.Start(b, "-dev") }
