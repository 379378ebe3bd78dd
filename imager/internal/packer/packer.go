// Package packer runs the installed Packer: version, init, validate, fmt and build, with
// build output streamed line by line and its artifact read from the machine-readable
// output.
package packer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Runner runs one Packer binary.
type Runner struct {
	Bin string   // path or name on PATH; "packer" when empty
	Env []string // added to the environment of every run (e.g. the API token)
	Log *slog.Logger
	// InterruptGrace is how long Packer gets to clean up (destroy its droplet and key)
	// after an interrupt before it is killed. Default 10 minutes.
	InterruptGrace time.Duration
}

func (r *Runner) bin() string {
	if r.Bin == "" {
		return "packer"
	}
	return r.Bin
}

func (r *Runner) logger() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Runner) command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.bin(), args...)
	cmd.Dir = dir
	// The DigitalOcean plugin 1.4 reads DIGITALOCEAN_TOKEN and warns about the older
	// DIGITALOCEAN_API_TOKEN, which the imager reads: Packer gets the token only as the former.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "DIGITALOCEAN_API_TOKEN=") })
	cmd.Env = append(append(env, "CHECKPOINT_DISABLE=1", "PACKER_NO_COLOR=1"), r.Env...)
	return cmd
}

// Version is a Packer version.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// NeedsPluginInit says whether this Packer needs the DigitalOcean plugin declared in
// required_plugins and installed with `packer init` (1.7 and newer). Packer 1.6 has the
// builder built in and rejects required_plugins.
func (v Version) NeedsPluginInit() bool { return v.Major > 1 || (v.Major == 1 && v.Minor >= 7) }

var versionRE = regexp.MustCompile(`(\d+)\.(\d+)\.(\d+)`)

// ParseVersion reads "Packer v1.6.6" or "1.9.4".
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("no version in %q", strings.TrimSpace(s))
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	c, _ := strconv.Atoi(m[3])
	return Version{a, b, c}, nil
}

// Version runs `packer version`.
func (r *Runner) Version(ctx context.Context) (Version, error) {
	out, err := r.command(ctx, "", "version").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return Version{}, fmt.Errorf("packer version: %w: %s", err, firstLine(ee.Stderr))
		}
		return Version{}, fmt.Errorf("packer version (is Packer installed? --packer / PATH): %w", err)
	}
	line := firstLine(out)
	v, err := ParseVersion(line)
	if err != nil {
		return Version{}, fmt.Errorf("packer version: %w", err)
	}
	return v, nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// run runs packer and copies its combined output to out.
func (r *Runner) run(ctx context.Context, dir string, out io.Writer, args ...string) error {
	start := time.Now()
	cmd := r.command(ctx, dir, args...)
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	r.logger().Debug("packer", "args", args, "duration", time.Since(start).Round(time.Millisecond), "err", err)
	if err != nil {
		return fmt.Errorf("packer %s: %w", args[0], err)
	}
	return nil
}

// Init runs `packer init dir` (Packer 1.7+ only).
func (r *Runner) Init(ctx context.Context, dir string, out io.Writer) error {
	return r.run(ctx, "", out, "init", dir)
}

// Validate runs `packer validate [args] dir`.
func (r *Runner) Validate(ctx context.Context, dir string, args []string, out io.Writer) error {
	return r.run(ctx, "", out, append(append([]string{"validate"}, args...), dir)...)
}

// Fmt runs `packer fmt` on target (a folder or file) and returns the files Packer
// reformatted (or, with check, would reformat).
func (r *Runner) Fmt(ctx context.Context, target string, check bool) ([]string, error) {
	args := []string{"fmt"}
	if check {
		args = append(args, "-check")
	}
	args = append(args, target)
	var stdout, stderr bytes.Buffer
	cmd := r.command(ctx, "", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var files []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			files = append(files, l)
		}
	}
	var ee *exec.ExitError
	if err != nil && !(check && errors.As(err, &ee) && ee.ExitCode() == 3) {
		msg := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		return nil, fmt.Errorf("packer fmt %s: %w: %s", target, err, msg)
	}
	return files, nil
}

// BuildRequest is one `packer build`.
type BuildRequest struct {
	Dir     string    // the staged template folder
	Args    []string  // -var / -var-file arguments
	Step    bool      // Packer's -debug: pauses for Enter at every step, keeps the temporary key in WorkDir
	Log     bool      // PACKER_LOG=1: Packer's own log, streamed with its output
	Stdin   io.Reader // for -debug's prompts
	WorkDir string    // Packer's working folder (where -debug writes the key)
	Out     io.Writer // human output, one line per message
	// Heartbeat is how often a silent Packer gets a "still: <last line>
	// (elapsed)" line (default 15s).
	Heartbeat time.Duration
}

// Result is what a build produced.
type Result struct {
	ArtifactID string // e.g. "nyc3:123456"
	SnapshotID int
	Regions    []string
}

// BuildArgs are the arguments Build passes to packer.
func BuildArgs(req BuildRequest) []string {
	args := []string{"build", "-machine-readable", "-color=false"}
	if req.Step {
		args = append(args, "-debug")
	}
	args = append(args, req.Args...)
	return append(args, req.Dir)
}

// Build runs `packer build` and streams its messages to req.Out. When ctx is cancelled
// Packer gets one interrupt (exec.Cmd.Cancel), so it destroys its droplet and temporary
// key, and InterruptGrace (exec.Cmd.WaitDelay) to finish before it is killed.
func (r *Runner) Build(ctx context.Context, req BuildRequest) (Result, error) {
	cmd := r.command(ctx, req.WorkDir, BuildArgs(req)...)
	if req.Log {
		cmd.Env = append(cmd.Env, "PACKER_LOG=1")
	}
	if req.Step {
		cmd.Stdin = req.Stdin
	} else {
		// Own process group: a terminal's Ctrl-C reaches the imager, which forwards one
		// interrupt, instead of Packer receiving it twice.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	grace := r.InterruptGrace
	if grace == 0 {
		grace = 10 * time.Minute
	}
	cmd.Cancel = func() error {
		r.logger().Warn("interrupting packer so it cleans up its droplet and key", "grace", grace)
		return cmd.Process.Signal(os.Interrupt)
	}
	cmd.WaitDelay = grace
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("packer build: %w", err)
	}
	// Packer's stderr and its parsed stdout reach req.Out from two goroutines;
	// while Packer is silent (SSH, snapshot, transfer) a heartbeat says for
	// how long.
	hb := &Heartbeat{Out: req.Out, Every: req.Heartbeat}
	out := &lockedWriter{w: hb}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start packer build: %w", err)
	}
	hb.Start()
	res, perr := ParseMachineReadable(stdout, out)
	hb.Stop()
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return res, fmt.Errorf("packer build interrupted: %w", context.Cause(ctx))
	}
	if werr != nil {
		return res, fmt.Errorf("packer build failed: %w", werr)
	}
	if perr != nil {
		return res, fmt.Errorf("read packer output: %w", perr)
	}
	if res.ArtifactID == "" {
		return res, errors.New("packer build finished without an artifact (no snapshot id in its output)")
	}
	return res, nil
}

// ParseMachineReadable reads `packer -machine-readable` output: ui messages go to out
// as plain lines, the artifact id is returned. Lines that are not machine-readable are
// passed through.
func ParseMachineReadable(r io.Reader, out io.Writer) (Result, error) {
	var res Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Split(line, ",")
		if len(f) < 3 {
			fmt.Fprintln(out, line)
			continue
		}
		if _, err := strconv.ParseInt(f[0], 10, 64); err != nil {
			fmt.Fprintln(out, line)
			continue
		}
		typ, data := f[2], f[3:]
		for i := range data {
			data[i] = unescape(data[i])
		}
		switch typ {
		case "ui":
			if len(data) >= 2 {
				msg := strings.TrimRight(data[1], "\n")
				for _, l := range strings.Split(msg, "\n") {
					fmt.Fprintln(out, l)
				}
			}
		case "artifact":
			if len(data) >= 3 && data[1] == "id" {
				res.ArtifactID = data[2]
				regions, id, err := ParseArtifactID(data[2])
				if err != nil {
					return res, err
				}
				res.Regions, res.SnapshotID = regions, id
			}
		}
	}
	return res, sc.Err()
}

func unescape(s string) string {
	s = strings.ReplaceAll(s, "%!(PACKER_COMMA)", ",")
	s = strings.ReplaceAll(s, `\r`, "\r")
	return strings.ReplaceAll(s, `\n`, "\n")
}

// ParseArtifactID reads the DigitalOcean builder's artifact id, "<regions>:<snapshot id>"
// (regions comma-separated).
func ParseArtifactID(s string) ([]string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return nil, 0, fmt.Errorf("artifact id %q: want <region>:<snapshot id>", s)
	}
	id, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return nil, 0, fmt.Errorf("artifact id %q: snapshot id is not a number", s)
	}
	return strings.Split(s[:i], ","), id, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
