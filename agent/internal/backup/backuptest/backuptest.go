// Package backuptest starts the real parts the backup and monitor
// integration tests need: an S3 server (versitygw, posix backend), the
// neo4j stand-in image and its containers, and a TCP proxy that breaks an
// upload halfway.
package backuptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/codelab-app/infra/agent/internal/retry"
)

// RandomName is prefix plus 8 random hex digits.
func RandomName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// FreePort returns a free loopback TCP address.
func FreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// S3Server is a running versitygw.
type S3Server struct {
	Endpoint          string // http://127.0.0.1:port
	Addr              string
	Bucket            string
	Region            string
	AccessKey, Secret string
	Client            *minio.Client
}

// StartS3 starts versitygw (posix backend in a temporary folder) and
// creates a bucket.
func StartS3(t *testing.T) *S3Server {
	t.Helper()
	s := &S3Server{Addr: FreePort(t), Bucket: "codelab-backups", Region: "us-east-1",
		AccessKey: RandomName("AK"), Secret: RandomName("secret-") + RandomName("")}
	s.Endpoint = "http://" + s.Addr
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "versitygw", "--port", s.Addr, "--region", s.Region, "--quiet", "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.Secret)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", logs.String())
		}
	})
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.Secret, ""), Region: s.Region})
	if err != nil {
		t.Fatal(err)
	}
	s.Client = c
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := retry.Do(wctx, retry.Policy{Initial: 50 * time.Millisecond, Max: time.Second}, func(ctx context.Context) error {
		return c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region})
	}); err != nil {
		t.Fatalf("versitygw did not come up: %v\n%s", err, logs.String())
	}
	return s
}

// Keys lists the bucket's keys below prefix.
func (s *S3Server) Keys(t *testing.T, prefix string) []string {
	t.Helper()
	var keys []string
	for o := range s.Client.ListObjects(context.Background(), s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// Get reads a key.
func (s *S3Server) Get(t *testing.T, key string) []byte {
	t.Helper()
	o, err := s.Client.GetObject(context.Background(), s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return b
}

var buildOnce sync.Once
var buildTag string
var buildErr error

// StandinImage builds the neo4j stand-in image (e2e/images/neo4j-standin)
// once per test binary and returns its tag.
func StandinImage(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		tag := "codelab-local/neo4j-standin:test"
		out, err := exec.Command(filepath.Join(root, "e2e/images/neo4j-standin/build.sh"), tag).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build the neo4j stand-in: %v: %s", err, out)
			return
		}
		buildTag = tag
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildTag
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the test's folder")
		}
		dir = parent
	}
}

// Docker runs the docker command and returns its trimmed output.
func Docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Neo4j is a stand-in database container, labelled like a Compose service.
type Neo4j struct {
	ID, Name, Volume, Project string
	HTTP                      string // http://127.0.0.1:port
	Bolt                      string // 127.0.0.1:port
	Backup                    string // 127.0.0.1:port of the (Enterprise) backup server
}

// StartNeo4j runs the stand-in on volume (created, and removed at the end
// of the test) as Compose service "neo4j" of project.
func StartNeo4j(t *testing.T, image, volume, project string) *Neo4j {
	t.Helper()
	n := &Neo4j{Name: RandomName("codelab-it-neo4j-"), Volume: volume, Project: project}
	Docker(t, "volume", "create", volume)
	t.Cleanup(func() { exec.Command("docker", "volume", "rm", "-f", volume).Run() })
	n.ID = Docker(t, "run", "-d", "--name", n.Name,
		"--label", "com.docker.compose.project="+project, "--label", "com.docker.compose.service=neo4j",
		"-v", volume+":/data", "-p", FreePort(t)+":7474", "-p", FreePort(t)+":7687", "-p", FreePort(t)+":6362",
		image)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", n.Name).CombinedOutput()
			t.Logf("%s logs:\n%s", n.Name, out)
		}
		exec.Command("docker", "rm", "-f", n.Name).Run()
	})
	n.WaitHealthy(t)
	return n
}

// WaitHealthy waits for Docker to call the container healthy and reads
// its host ports (fixed, so they survive restarts).
func (n *Neo4j) WaitHealthy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second}, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", n.Name).Output()
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(out)); s != "healthy" {
			return fmt.Errorf("container is %s", s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s never became healthy: %v", n.Name, err)
	}
	n.HTTP = "http://" + hostPort(t, n.Name, "7474/tcp")
	n.Bolt = hostPort(t, n.Name, "7687/tcp")
	n.Backup = hostPort(t, n.Name, "6362/tcp")
}

func hostPort(t *testing.T, name, port string) string {
	out := Docker(t, "port", name, port)
	if i := strings.IndexByte(out, '\n'); i > 0 {
		out = out[:i]
	}
	return strings.Replace(out, "0.0.0.0", "127.0.0.1", 1)
}
