package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/codelab-app/infra/e2e/internal/localdo"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Spaces is the demo's stand-in for DigitalOcean Spaces: versitygw (the S3
// server the backup tests use, built by make deps) serving a folder, on the
// local DigitalOcean's public gateway so droplets reach it. The neo4j
// droplet's backups go there.
type Spaces struct {
	Endpoint  string `json:"endpoint"` // http://gateway:port, as droplets reach it
	Local     string `json:"local"`    // gateway:port, for the S3 client on the host
	Bucket    string `json:"bucket"`
	Region    string `json:"region"`
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
	PID       int    `json:"pid"`
}

func (c *Cluster) spacesDir() string { return filepath.Join(c.Opts.Cache, "spaces", c.Opts.Instance) }

// startSpaces starts versitygw (or reuses the one a previous `up` left
// running) and makes sure the bucket exists.
func (c *Cluster) startSpaces(ctx context.Context) error {
	dir := c.spacesDir()
	infoFile := filepath.Join(dir, "spaces.json")
	var s Spaces
	if b, err := os.ReadFile(infoFile); err == nil && json.Unmarshal(b, &s) == nil && s.PID > 0 && localdo.IsProgram(s.PID, "versitygw") {
		c.Spaces = &s
		fmt.Fprintf(c.Opts.Out, "    versitygw running (pid %d) at %s\n", s.PID, s.Endpoint)
		return c.ensureBucket(ctx)
	}
	gw := c.Info.Networks.Public.Gateway.String()
	port, err := freePort(gw)
	if err != nil {
		return err
	}
	s = Spaces{Bucket: "codelab-backups", Region: c.Opts.Region, AccessKey: "DEMO" + randHex(8), SecretKey: randHex(20)}
	s.Endpoint = "http://" + net.JoinHostPort(gw, port)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "versitygw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		bin = filepath.Join(c.Opts.Cache, "bin", "versitygw")
	}
	// Listens on the gateway only (droplets and the host both reach it
	// there). Keys come from the environment, never argv.
	cmd := exec.Command(bin, "--port", net.JoinHostPort(gw, port), "--region", s.Region, "--quiet", "posix", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw (make deps builds it): %w", err)
	}
	s.PID = cmd.Process.Pid
	s.Local = net.JoinHostPort(gw, port)
	_ = cmd.Process.Release()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(infoFile, b, 0o600); err != nil {
		return err
	}
	c.Spaces = &s
	fmt.Fprintf(c.Opts.Out, "    versitygw (pid %d) at %s, bucket %s\n", s.PID, s.Endpoint, s.Bucket)
	return c.ensureBucket(ctx)
}

func (c *Cluster) ensureBucket(ctx context.Context) error {
	s := c.Spaces
	mc, err := minio.New(s.Local, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: s.Region})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		ok, err := mc.BucketExists(ctx, s.Bucket)
		if err == nil && ok {
			return nil
		}
		if err == nil {
			if err = mc.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region}); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local Spaces bucket %s at %s: %w", s.Bucket, s.Local, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// SpacesSettings are the KV settings (codelab/<env>/backup/) that point the
// neo4j backups at the local Spaces.
func (c *Cluster) SpacesSettings() map[string]string {
	s := c.Spaces
	p := "codelab/" + c.Opts.Env + "/backup/"
	return map[string]string{
		p + "spaces_endpoint":   s.Endpoint,
		p + "spaces_bucket":     s.Bucket,
		p + "spaces_region":     s.Region,
		p + "spaces_access_key": s.AccessKey,
		p + "spaces_secret_key": s.SecretKey,
		// The manifest key, derived from the Spaces secret so that it
		// stays the same for the life of the instance.
		p + "manifest_key": manifestKey(s.SecretKey),
	}
}

func manifestKey(secret string) string {
	sum := sha256.Sum256([]byte("codelab backup manifest key\x00" + secret))
	return hex.EncodeToString(sum[:])
}

// stopSpaces stops the versitygw of an instance and removes its data.
func stopSpaces(o Options) error {
	dir := filepath.Join(o.Cache, "spaces", o.Instance)
	var s Spaces
	if b, err := os.ReadFile(filepath.Join(dir, "spaces.json")); err == nil && json.Unmarshal(b, &s) == nil && s.PID > 0 && localdo.IsProgram(s.PID, "versitygw") {
		_ = syscall.Kill(s.PID, syscall.SIGTERM)
		for range 50 {
			if syscall.Kill(s.PID, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintf(o.Out, "stopped versitygw (pid %d)\n", s.PID)
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}
