package containers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/retry"
	"github.com/codelab-app/infra/internal/baked"
	"github.com/codelab-app/infra/tools/testenv"
)

// TestPullAndComposeAgainstRealDocker pulls FROM scratch images from a local
// registry through the real dockerd, checks digests and the no-re-pull
// rule, runs compose up --wait, and diagnoses an unhealthy service.
func TestPullAndComposeAgainstRealDocker(t *testing.T) {
	testenv.Integration(t, "docker")
	ctx := context.Background()
	reg := testenv.StartRegistry(t)
	tag := fmt.Sprintf("t%d", time.Now().UnixNano())
	refs := []string{reg.Addr() + "/codelab-it/a:" + tag, reg.Addr() + "/codelab-it/b:" + tag}
	digests := map[string]string{}
	for _, r := range refs {
		digests[r] = testenv.PushImage(t, testenv.Image{Ref: r, Pad: 1 << 20})
		testenv.RemoveImage(t, r) // the pull must fetch it
	}
	t.Cleanup(func() {
		for _, r := range refs {
			testenv.RemoveImage(t, r)
		}
	})

	api, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	var seen int
	p := &Puller{API: api, OnProgress: func(Progress) { seen++ }}
	got, err := p.PullAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		if g.Result != PullPulled || g.Digest != digests[g.Ref] {
			t.Errorf("%s: result %s digest %s, want pulled %s", g.Ref, g.Result, g.Digest, digests[g.Ref])
		}
		if g.Current < 1<<20 {
			t.Errorf("%s: %d bytes recorded, want at least the 1 MiB pad", g.Ref, g.Current)
		}
	}
	if seen == 0 {
		t.Error("no progress reported")
	}

	// Same digest at the registry: nothing is pulled again.
	again, err := p.PullAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range again {
		if g.Result != PullPresent || g.Digest != digests[g.Ref] {
			t.Errorf("second pull of %s: %s %s, want present", g.Ref, g.Result, g.Digest)
		}
	}

	// Compose up --wait with both images, one of them made unhealthy.
	dir := t.TempDir()
	project := "codelab-it-" + tag
	compose := fmt.Sprintf(`services:
  a:
    image: %s
    healthcheck: {test: ["CMD", "/app", "healthcheck"], interval: 1s, timeout: 2s, retries: 2}
  b:
    image: %s
    environment: {UNHEALTHY_FILE: /app}
    healthcheck: {test: ["CMD", "/app", "healthcheck"], interval: 1s, timeout: 2s, retries: 2}
`, refs[0], refs[1])
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = testenv.Output(ctx, "docker", "compose", "-p", project, "-f", file, "down", "-v", "-t", "1")
	})
	imgs, err := ComposeImages([]byte(compose))
	if err != nil || strings.Join(imgs, ",") != strings.Join(refs, ",") {
		t.Fatalf("ComposeImages = %v, %v", imgs, err)
	}
	c := Compose{Project: project, File: file}
	err = c.Up(ctx, 20*time.Second)
	if err == nil {
		t.Fatal("compose up succeeded with an unhealthy service")
	}
	f, ok := Diagnose(ctx, api, project, 20)
	if !ok || f.Service != "b" || !strings.Contains(f.State, "unhealthy") {
		t.Fatalf("Diagnose = %+v, %v; want service b unhealthy", f, ok)
	}
	if !strings.Contains(strings.Join(f.Logs, "\n"), "listening") {
		t.Errorf("logs = %q, want the app's start line", f.Logs)
	}

	// Healthy project: up --wait succeeds; List reports digests.
	healthy := strings.Replace(compose, "environment: {UNHEALTHY_FILE: /app}", "environment: {UNHEALTHY_FILE: /nonexistent}", 1)
	if err := os.WriteFile(file, []byte(healthy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Up(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	list, err := List(ctx, api, project)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	for _, ct := range list {
		if ct.State != "running" || ct.Health != "healthy" || ct.ImageDigest != digests[ct.Image] {
			t.Errorf("container %+v, want running healthy at %s", ct, digests[ct.Image])
		}
	}
	ids := map[string]string{}
	for _, ct := range list {
		ids[ct.Service] = ct.ID
	}
	// A second up with the same file recreates nothing.
	if err := c.Up(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	list, _ = List(ctx, api, project)
	for _, ct := range list {
		if ids[ct.Service] != ct.ID {
			t.Errorf("service %s was recreated by an unchanged up", ct.Service)
		}
	}

	// Registry gone and image absent: the pull fails, naming the image.
	reg.Stop()
	missing := reg.Addr() + "/codelab-it/missing:" + tag
	fast := &Puller{API: api, Retry: retry.Policy{Initial: 50 * time.Millisecond, Attempts: 2}}
	_, err = fast.PullAll(ctx, []string{missing, refs[0]})
	var pe *PullError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Ref != missing {
		t.Fatalf("err = %v, want a PullError for %s only (the present image is kept)", err, missing)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want the registry's connection error", err)
	}
}

// TestBakedImagesContactNoRegistry: images pulled from the local registry
// (as the imager bakes them) are used through UseBaked with the registry
// gone and a tripwire listening on its address: no connection reaches it.
// The usual pull path, run next against the same tripwire, does connect,
// so the tripwire would have seen a contact.
func TestBakedImagesContactNoRegistry(t *testing.T) {
	testenv.Integration(t, "docker")
	ctx := context.Background()
	reg := testenv.StartRegistry(t)
	tag := fmt.Sprintf("t%d", time.Now().UnixNano())
	ref := reg.Addr() + "/codelab-it/baked:" + tag
	digest := testenv.PushImage(t, testenv.Image{Ref: ref, Pad: 1 << 20})
	t.Cleanup(func() { testenv.RemoveImage(t, ref) })
	api, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	// The local image has the registry's digest (as after the imager's pull).
	if _, err := (&Puller{API: api}).PullAll(ctx, []string{ref}); err != nil {
		t.Fatal(err)
	}

	reg.Stop()
	l, err := net.Listen("tcp", reg.Addr())
	if err != nil {
		t.Fatalf("tripwire on the registry's address: %v", err)
	}
	defer l.Close()
	var contacts atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			contacts.Add(1)
			c.Close()
		}
	}()

	bk := baked.Baked{SchemaVersion: 1, Role: "api", Version: tag, Registry: reg.Addr() + "/codelab-it",
		Images: []baked.Image{{Ref: ref, Digest: digest}}}
	start := time.Now()
	out, err := (&Puller{API: api}).UseBaked(ctx, []string{ref}, bk)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Result != PullBaked || out[0].Digest != digest {
		t.Errorf("UseBaked = %+v, want baked at %s", out[0], digest)
	}
	t.Logf("baked images checked in %s", took)
	if n := contacts.Load(); n != 0 {
		t.Fatalf("the registry's address saw %d connection(s) while using baked images", n)
	}

	// A digest that is not the local one: not baked, and still no contact.
	other := bk
	other.Images = []baked.Image{{Ref: ref, Digest: "sha256:" + strings.Repeat("0", 64)}}
	var nb *NotBakedError
	if _, err := (&Puller{API: api}).UseBaked(ctx, []string{ref}, other); !errors.As(err, &nb) {
		t.Errorf("UseBaked with another digest: %v, want a NotBakedError", err)
	}

	// The usual path asks the registry for the digest: the tripwire sees it.
	fast := &Puller{API: api, Retry: retry.Policy{Initial: 10 * time.Millisecond, Attempts: 1}}
	if _, err := fast.PullAll(ctx, []string{ref}); err != nil {
		t.Fatalf("PullAll with the image present: %v", err)
	}
	if contacts.Load() == 0 {
		t.Fatal("the tripwire saw no connection from the usual pull path either: it proves nothing")
	}
}
