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
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	volumetypes "github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/retry"
)

// Integration skips the test unless CODELAB_INTEGRATION=1, and then fails it
// when a named program is missing.
func Integration(t *testing.T, programs ...string) {
	t.Helper()
	if os.Getenv("CODELAB_INTEGRATION") != "1" {
		t.Skip("integration test: set CODELAB_INTEGRATION=1 (make test does) to run it against versitygw, dockerd and the neo4j stand-in")
	}
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("integration prerequisite missing: %s not on PATH (make deps builds it into ~/.cache/codelab/bin)", p)
		}
	}
	if _, err := dockerClient(t).Ping(context.Background()); err != nil {
		t.Fatalf("integration prerequisite missing: dockerd does not answer: %v", err)
	}
}

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

// dockerClient is the Engine API client the helpers share.
func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	c, err := containers.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// StartedAt is when the container last started, as Docker records it.
func StartedAt(t *testing.T, name string) string {
	t.Helper()
	in, err := dockerClient(t).ContainerInspect(context.Background(), name)
	if err != nil {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return in.State.StartedAt
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
	ctx := context.Background()
	api := dockerClient(t)
	n := &Neo4j{Name: RandomName("codelab-it-neo4j-"), Volume: volume, Project: project,
		Bolt: FreePort(t), Backup: FreePort(t)}
	httpAddr := FreePort(t)
	n.HTTP = "http://" + httpAddr
	if _, err := api.VolumeCreate(ctx, volumetypes.CreateOptions{Name: volume}); err != nil {
		t.Fatalf("create volume %s: %v", volume, err)
	}
	t.Cleanup(func() { _ = api.VolumeRemove(context.Background(), volume, true) })
	bindings := nat.PortMap{}
	for port, addr := range map[nat.Port]string{"7474/tcp": httpAddr, "7687/tcp": n.Bolt, "6362/tcp": n.Backup} {
		host, hp, _ := net.SplitHostPort(addr)
		bindings[port] = []nat.PortBinding{{HostIP: host, HostPort: hp}}
	}
	created, err := api.ContainerCreate(ctx,
		&container.Config{Image: image, Labels: map[string]string{containers.ProjectLabel: project, containers.ServiceLabel: "neo4j"}},
		&container.HostConfig{Binds: []string{volume + ":/data"}, PortBindings: bindings}, nil, nil, n.Name)
	if err != nil {
		t.Fatalf("create %s: %v", n.Name, err)
	}
	n.ID = created.ID
	t.Cleanup(func() {
		ctx := context.Background()
		if t.Failed() {
			t.Logf("%s logs:\n%s", n.Name, strings.Join(containers.Logs(ctx, api, n.ID, 200), "\n"))
		}
		_ = api.ContainerRemove(ctx, n.ID, container.RemoveOptions{Force: true})
	})
	if err := api.ContainerStart(ctx, n.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", n.Name, err)
	}
	n.WaitHealthy(t)
	return n
}

// WaitHealthy waits for Docker to call the container healthy.
func (n *Neo4j) WaitHealthy(t *testing.T) {
	t.Helper()
	api := dockerClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second}, func(ctx context.Context) error {
		in, err := api.ContainerInspect(ctx, n.ID)
		if err != nil {
			return err
		}
		if in.State.Health == nil {
			return retry.Permanent(fmt.Errorf("the stand-in image has no healthcheck"))
		}
		if s := in.State.Health.Status; s != container.Healthy {
			return fmt.Errorf("container is %s", s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s never became healthy: %v", n.Name, err)
	}
}

// Proxy forwards TCP to a target until Trip bytes went upstream in total;
// then it cuts every connection and refuses new ones: an upload that
// fails halfway and a network that stays down.
type Proxy struct {
	Addr    string
	Trip    int64
	sent    atomic.Int64
	tripped atomic.Bool
	l       net.Listener
	mu      sync.Mutex
	conns   []net.Conn
}

// StartProxy listens on a free loopback port.
func StartProxy(t *testing.T, target string, trip int64) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), Trip: trip, l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if p.tripped.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(c, u); c.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if p.sent.Add(int64(n)) > p.Trip {
							p.tripped.Store(true)
							p.cut()
							return
						}
						if _, werr := u.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				u.Close()
			}()
		}
	}()
	return p
}

// Tripped reports whether the proxy has cut the line.
func (p *Proxy) Tripped() bool { return p.tripped.Load() }

func (p *Proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
