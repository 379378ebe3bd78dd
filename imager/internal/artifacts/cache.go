package artifacts

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/codelab-app/infra/imager/internal/fileutil"
)

// HashFile returns the hex SHA-256 of the file at p.
func HashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Cache downloads vendor artifacts once into Dir and verifies them on every use.
type Cache struct {
	Dir    string
	Client *http.Client
	Log    *slog.Logger
	// ProgressEvery is how often a download logs its progress (default 5s).
	ProgressEvery time.Duration
}

func (c *Cache) logger() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Path is where the cache keeps a vendor artifact.
func (c *Cache) Path(a Artifact) string {
	return filepath.Join(c.Dir, a.Name, a.Version, a.FileName)
}

// Fetch returns a verified local file for a: the local file itself (re-hashed), the cached
// download if its checksum still matches, or a fresh download that matches.
func (c *Cache) Fetch(ctx context.Context, a Artifact) (string, error) {
	if a.SHA256 == "" {
		return "", fmt.Errorf("artifact %s: no SHA-256; refusing to use it", a.Name)
	}
	if a.Source == SourceLocal {
		sum, err := HashFile(a.LocalPath)
		if err != nil {
			return "", fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		if sum != a.SHA256 {
			return "", fmt.Errorf("artifact %s: local file %s changed since it was resolved (sha256 %s, want %s)", a.Name, a.LocalPath, sum, a.SHA256)
		}
		return a.LocalPath, nil
	}
	p := c.Path(a)
	log := c.logger().With("artifact", a.Name, "version", a.Version)
	if sum, err := HashFile(p); err == nil {
		if sum == a.SHA256 {
			log.Debug("cache hit", "path", p)
			return p, nil
		}
		log.Warn("cached file has the wrong checksum; downloading again", "path", p, "got", sum)
	}
	start := time.Now()
	if err := c.download(ctx, a, p); err != nil {
		return "", err
	}
	log.Info("downloaded and verified", "url", a.URL, "duration", time.Since(start).Round(time.Millisecond))
	return p, nil
}

func (c *Cache) download(ctx context.Context, a Artifact, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("artifact %s: create cache folder: %w", a.Name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("artifact %s: download %s: %w", a.Name, a.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("artifact %s: download %s: %s", a.Name, a.URL, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	body := &progressReader{r: resp.Body, total: resp.ContentLength, every: c.progressEvery(),
		report: func(n, total int64) {
			c.logger().Info("downloading", "artifact", a.Name, "progress", transfer(n, total))
		}}
	if _, err := io.Copy(io.MultiWriter(tmp, h), body); err != nil {
		tmp.Close()
		return fmt.Errorf("artifact %s: download %s: %w", a.Name, a.URL, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return fmt.Errorf("artifact %s: checksum mismatch for %s: got sha256 %s, want %s", a.Name, a.URL, got, a.SHA256)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	return nil
}

// Stage fetches and verifies every downloaded or local artifact and writes the binaries
// the droplet installs into payloadDir (extracted from their archives). Go-module and
// apt artifacts are not staged here.
// The downloads run in parallel; each says how far it got every few seconds.
func (c *Cache) Stage(ctx context.Context, arts []Artifact, payloadDir string) error {
	var staged []Artifact
	for _, a := range arts {
		if a.Source == SourceVendor || a.Source == SourceLocal {
			staged = append(staged, a) // the others are built (doctl) or installed by apt on the droplet
		}
	}
	srcs := make([]string, len(staged))
	errs := make([]error, len(staged))
	var wg sync.WaitGroup
	for i, a := range staged {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srcs[i], errs[i] = c.Fetch(ctx, a)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, a := range staged {
		src := srcs[i]
		var err error
		dst := filepath.Join(payloadDir, filepath.FromSlash(a.Dest))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("stage %s: %w", a.Name, err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(a.Dest, "bin/") {
			mode = 0o755
		}
		switch a.Kind {
		case KindBinary:
			err = fileutil.CopyFile(src, dst, mode)
		case KindZip:
			err = extractZip(src, a.Member, dst, mode)
		case KindTarGz:
			err = extractTarGz(src, a.Member, dst, mode)
		default:
			err = fmt.Errorf("unknown kind %q", a.Kind)
		}
		if err != nil {
			return fmt.Errorf("stage %s: %w", a.Name, err)
		}
	}
	return nil
}

func extractZip(src, member, dst string, mode os.FileMode) error {
	zr, err := zip.OpenReader(src)
	if err != nil {
		return fmt.Errorf("open zip %s: %w", src, err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if path.Clean(f.Name) != member {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("open %s in %s: %w", member, src, err)
		}
		defer rc.Close()
		return fileutil.WriteFrom(rc, dst, mode)
	}
	return fmt.Errorf("%s has no file %q", src, member)
}

func extractTarGz(src, member, dst string, mode os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("open gzip %s: %w", src, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s has no file %q", src, member)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", src, err)
		}
		if h.Typeflag == tar.TypeReg && path.Clean(h.Name) == member {
			return fileutil.WriteFrom(tr, dst, mode)
		}
	}
}

// ChecksumsFile is written at the payload's root; the install script checks it with
// `sha256sum -c` before installing anything.
const ChecksumsFile = "SHA256SUMS"

// WriteChecksums writes ChecksumsFile over every other file under dir, in sha256sum's
// format, sorted by path.
func WriteChecksums(dir string) error {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ChecksumsFile {
			return nil
		}
		sum, err := HashFile(p)
		if err != nil {
			return err
		}
		lines = append(lines, "./"+rel+"\x00"+sum)
		return nil
	})
	if err != nil {
		return fmt.Errorf("checksum payload: %w", err)
	}
	sort.Strings(lines)
	var b strings.Builder
	for _, l := range lines {
		rel, sum, _ := strings.Cut(l, "\x00")
		fmt.Fprintf(&b, "%s  %s\n", sum, rel)
	}
	content := b.String()
	if err := os.WriteFile(filepath.Join(dir, ChecksumsFile), []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", ChecksumsFile, err)
	}
	return nil
}

func (c *Cache) progressEvery() time.Duration {
	if c.ProgressEvery > 0 {
		return c.ProgressEvery
	}
	return 5 * time.Second
}

// progressReader reports how much was read, at most once per every.
type progressReader struct {
	r      io.Reader
	total  int64
	every  time.Duration
	report func(n, total int64)
	n      int64
	last   time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	now := time.Now()
	if p.last.IsZero() {
		p.last = now
	} else if now.Sub(p.last) >= p.every {
		p.last = now
		p.report(p.n, p.total)
	}
	return n, err
}

// transfer is "12.3 MB / 40.0 MB (30%)", or "12.3 MB" without a total.
func transfer(n, total int64) string {
	mb := func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	if total <= 0 {
		return mb(n)
	}
	return fmt.Sprintf("%s / %s (%d%%)", mb(n), mb(total), n*100/total)
}
