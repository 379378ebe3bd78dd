package packer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codelab-app/infra/imager/internal/packer"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in       string
		want     packer.Version
		needInit bool
	}{
		{"Packer v1.6.6", packer.Version{1, 6, 6}, false},
		{"Packer v1.7.0\n", packer.Version{1, 7, 0}, true},
		{"1.11.2", packer.Version{1, 11, 2}, true},
		{"Packer v2.0.0 (linux)", packer.Version{2, 0, 0}, true},
	} {
		v, err := packer.ParseVersion(tc.in)
		if err != nil || v != tc.want || v.NeedsPluginInit() != tc.needInit {
			t.Errorf("ParseVersion(%q) = %v, %v (init %v); want %v (init %v)", tc.in, v, err, v.NeedsPluginInit(), tc.want, tc.needInit)
		}
	}
	if _, err := packer.ParseVersion("nope"); err == nil {
		t.Error("want an error for no version")
	}
}

func TestParseArtifactID(t *testing.T) {
	for _, tc := range []struct {
		in      string
		regions []string
		id      int
		bad     bool
	}{
		{"nyc3:123456", []string{"nyc3"}, 123456, false},
		{"nyc3,sfo3:42", []string{"nyc3", "sfo3"}, 42, false},
		{"123", nil, 0, true},
		{"nyc3:abc", nil, 0, true},
	} {
		r, id, err := packer.ParseArtifactID(tc.in)
		if (err != nil) != tc.bad || id != tc.id || !slices.Equal(r, tc.regions) {
			t.Errorf("ParseArtifactID(%q) = %v, %d, %v", tc.in, r, id, err)
		}
	}
}

func TestParseMachineReadable(t *testing.T) {
	in := strings.Join([]string{
		`1700000000,,ui,say,==> digitalocean.services-base: Creating droplet...`,
		`1700000001,digitalocean.services-base,ui,message,    digitalocean.services-base: line one\nline two%!(PACKER_COMMA) with comma`,
		`1700000002,digitalocean.services-base,artifact-count,1`,
		`1700000003,digitalocean.services-base,artifact,0,builder-id,pearkes.digitalocean`,
		`1700000003,digitalocean.services-base,artifact,0,id,nyc3:98765`,
		`not machine readable`,
	}, "\n")
	var out bytes.Buffer
	res, err := packer.ParseMachineReadable(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.SnapshotID != 98765 || res.ArtifactID != "nyc3:98765" || !slices.Equal(res.Regions, []string{"nyc3"}) {
		t.Errorf("result = %+v", res)
	}
	want := "==> digitalocean.services-base: Creating droplet...\n    digitalocean.services-base: line one\nline two, with comma\nnot machine readable\n"
	if out.String() != want {
		t.Errorf("out =\n%q\nwant\n%q", out.String(), want)
	}
}

func TestPrefixedLinesDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	lines := packer.NewLines(&buf)
	var wg sync.WaitGroup
	for _, p := range []string{"a | ", "b | "} {
		w := lines.Prefixed(p)
		wg.Go(func() {
			for i := range 200 {
				// Lines written in fragments must still come out whole.
				fmt.Fprintf(w, "line %d ", i)
				fmt.Fprintf(w, "of %s\n", strings.TrimSuffix(p, " | "))
			}
			fmt.Fprint(w, "tail")
			if err := w.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != 402 {
		t.Fatalf("%d lines, want 402", len(got))
	}
	for _, l := range got {
		ok := (strings.HasPrefix(l, "a | ") && (strings.HasSuffix(l, " of a") || l == "a | tail")) ||
			(strings.HasPrefix(l, "b | ") && (strings.HasSuffix(l, " of b") || l == "b | tail"))
		if !ok {
			t.Fatalf("mangled line %q", l)
		}
	}
}

// fakePacker writes a script standing in for packer: it records its arguments and
// environment and prints machine-readable output. It is only used to check the
// arguments, variables and output handling; real builds use the real Packer.
func fakePacker(t *testing.T, body string) (bin, argsFile string) {
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	bin = filepath.Join(dir, "packer")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argsFile + "\necho \"token=$DIGITALOCEAN_API_TOKEN\" >> " + argsFile + "\n" + body
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argsFile
}

func TestBuild(t *testing.T) {
	bin, argsFile := fakePacker(t, `
echo "1,,ui,say,==> building"
echo "stderr line" >&2
echo "2,x,artifact,0,id,nyc3:555"
`)
	r := &packer.Runner{Bin: bin, Env: []string{"DIGITALOCEAN_API_TOKEN=secret"}}
	var buf bytes.Buffer
	lines := packer.NewLines(&buf)
	out := lines.Prefixed("services-base | ")
	res, err := r.Build(context.Background(), packer.BuildRequest{
		Dir: "/stage", Args: []string{"-var", "a=b"}, WorkDir: t.TempDir(), Out: out,
	})
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.SnapshotID != 555 {
		t.Errorf("snapshot id = %d", res.SnapshotID)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "build\n-machine-readable\n-color=false\n-var\na=b\n/stage\ntoken=secret\n"; string(args) != want {
		t.Errorf("args =\n%s\nwant\n%s", args, want)
	}
	for _, want := range []string{"services-base | ==> building\n", "services-base | stderr line\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output %q lacks %q", buf.String(), want)
		}
	}
	if got := packer.BuildArgs(packer.BuildRequest{Dir: "d", Step: true}); !slices.Contains(got, "-debug") {
		t.Errorf("step args = %v", got)
	}
	if got := packer.BuildArgs(packer.BuildRequest{Dir: "d", Log: true}); slices.Contains(got, "-debug") {
		t.Errorf("--debug must not pause Packer: args %v", got)
	}
}

// Log (imager build --debug) switches on Packer's log; it reaches the output.
func TestBuildLogSetsPackerLog(t *testing.T) {
	bin, _ := fakePacker(t, `
echo "packer log: PACKER_LOG=$PACKER_LOG" >&2
echo "2,x,artifact,0,id,nyc3:555"
`)
	var buf bytes.Buffer
	if _, err := (&packer.Runner{Bin: bin}).Build(context.Background(), packer.BuildRequest{Dir: "d", Log: true, Out: &buf}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "packer log: PACKER_LOG=1") {
		t.Fatalf("output %q", buf.String())
	}
}

// A Packer that ignores the interrupt is killed once the grace is over.
func TestBuildKillsPackerAfterTheGrace(t *testing.T) {
	bin, _ := fakePacker(t, `
trap '' INT
echo "1,,ui,say,==> waiting"
while :; do sleep 0.05; done
`)
	ctx, cancel := context.WithCancel(context.Background())
	var buf syncBuf
	done := make(chan error)
	go func() {
		_, err := (&packer.Runner{Bin: bin, InterruptGrace: 300 * time.Millisecond}).Build(ctx, packer.BuildRequest{Dir: "d", Out: &buf})
		done <- err
	}()
	for !strings.Contains(buf.String(), "waiting") {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("packer was not killed after the grace")
	}
}

func TestBuildFailures(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"exit status", "echo '1,,ui,error,Build errored'\nexit 1\n", "packer build failed"},
		{"no artifact", "echo '1,,ui,say,done'\n", "without an artifact"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, _ := fakePacker(t, tc.body)
			var buf bytes.Buffer
			_, err := (&packer.Runner{Bin: bin}).Build(context.Background(), packer.BuildRequest{Dir: "d", Out: &buf})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// On cancel, Packer gets an interrupt and time to clean up, and its output still arrives.
func TestBuildInterruptLetsPackerCleanUp(t *testing.T) {
	bin, _ := fakePacker(t, `
trap 'echo "1,,ui,say,==> destroying droplet"; exit 1' INT
echo "1,,ui,say,==> waiting"
while :; do sleep 0.05; done
`)
	ctx, cancel := context.WithCancel(context.Background())
	var buf syncBuf
	done := make(chan error)
	go func() {
		_, err := (&packer.Runner{Bin: bin, InterruptGrace: 10 * time.Second}).Build(ctx, packer.BuildRequest{Dir: "d", Out: &buf})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "waiting") {
		if time.Now().After(deadline) {
			t.Fatal("fake packer never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(buf.String(), "destroying droplet") {
		t.Fatalf("packer did not get to clean up: %q", buf.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestFmtCheckReportsFiles(t *testing.T) {
	bin, argsFile := fakePacker(t, "echo /x/a.pkr.hcl\nexit 3\n")
	files, err := (&packer.Runner{Bin: bin}).Fmt(context.Background(), "/x", true)
	if err != nil || !slices.Equal(files, []string{"/x/a.pkr.hcl"}) {
		t.Fatalf("Fmt = %v, %v", files, err)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(args), "fmt\n-check\n/x\n") {
		t.Errorf("args = %q", args)
	}
	bin, _ = fakePacker(t, "echo 'Error: bad syntax' >&2\nexit 1\n")
	if _, err := (&packer.Runner{Bin: bin}).Fmt(context.Background(), "/x", true); err == nil || !strings.Contains(err.Error(), "bad syntax") {
		t.Fatalf("Fmt on a syntax error = %v", err)
	}
}
