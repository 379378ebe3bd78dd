package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/backup/backuptest"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/monitor"
	"github.com/codelab-app/infra/tools/testenv"
	"github.com/minio/minio-go/v7"
)

// timerCommand is the ExecStart of the unit the backup timer starts,
// without the binary: what the schedule runs.
func timerCommand(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../../systemd/codelab-backup.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			f := strings.Fields(rest)
			if f[0] != "/usr/local/bin/codelab-agent" {
				t.Fatalf("ExecStart runs %s", f[0])
			}
			return f[1:]
		}
	}
	t.Fatal("codelab-backup.service has no ExecStart")
	return nil
}

func TestBackupHelpAndUsage(t *testing.T) {
	if args := timerCommand(t); strings.Join(args, " ") != "backup run" {
		t.Errorf("the timer runs %q", args)
	}
	code, out, _ := run(t, "", "backup", "--help")
	for _, want := range []string{"run", "list", "restore", backup.ConfigFile, backup.StateFile} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("backup --help (exit %d) lacks %q", code, want)
		}
	}
	if code, _, errOut := run(t, "", "backup", "restore", "last-tuesday", "--root", t.TempDir()); code != 64 {
		t.Errorf("restore with a bad id: exit %d, want 64: %s", code, errOut)
	}
	if code, _, errOut := run(t, "", "backup", "run", "--root", t.TempDir()); code != 1 || !strings.Contains(errOut, backup.ConfigFile) {
		t.Errorf("backup run without settings: exit %d: %s", code, errOut)
	}
	code, out, _ = run(t, "", "monitor", "--help")
	if code != 0 || !strings.Contains(out, "/health/backup") {
		t.Errorf("monitor --help (exit %d): %s", code, out)
	}
}

// The schedule's command, through the real CLI, against versitygw and the
// neo4j stand-in: a verified, uploaded backup that `backup list` and
// `monitor --once` show.
func TestScheduledBackupIntegration(t *testing.T) {
	testenv.Integration(t, "versitygw", "docker")
	s3 := backuptest.StartS3(t)
	image := backuptest.StandinImage(t)
	project := backuptest.RandomName("codelabit")
	db := backuptest.StartNeo4j(t, image, project+"-data", project)
	req, err := http.NewRequest(http.MethodPut, db.HTTP+"/standin/nodes/alice", strings.NewReader("knows bob"))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write data: %v %v", err, resp)
	}

	root := fsutil.Root{Dir: t.TempDir()}
	sec, err := json.Marshal(backup.Spaces{Endpoint: s3.Endpoint, Bucket: s3.Bucket, Region: s3.Region, AccessKey: s3.AccessKey, SecretKey: s3.Secret,
		ManifestKey: "cli-integration-manifest-key-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	root.WriteFile("/root/docker/neo4j/spaces.json", sec, 0o600)
	c := backup.DefaultConfig()
	c.Image, c.Volume, c.Project = image, db.Volume, project
	now := time.Now().UTC()
	c.Window = now.Add(-time.Hour).Format("15:04") + "-" + now.Add(time.Hour).Format("15:04") // the timer fires inside it
	c.MinFreeBytes = 0
	c.Monitor.BoltAddr, c.Monitor.HTTPURL = db.Bolt, db.HTTP+"/"
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	root.WriteFile(backup.ConfigFile, b, 0o644)

	code, out, errOut := run(t, "", append(timerCommand(t), "--root", root.Dir)...)
	if code != 0 || !strings.Contains(out, "verified, uploaded") {
		t.Fatalf("scheduled run: exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, s3.Secret) {
		t.Fatal("the log shows the secret key")
	}
	st, err := backup.ReadState(root)
	if err != nil || st.LastRun == nil || st.LastRun.Result != backup.ResultOK || st.NewestVerified == nil {
		t.Fatalf("state = %+v, %v", st, err)
	}
	id := st.NewestVerified.ID

	code, out, errOut = run(t, "", "backup", "list", "--json", "--root", root.Dir)
	var list struct {
		Backups []struct {
			ID       string `json:"id"`
			Complete bool   `json:"complete"`
		} `json:"backups"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Backups) != 1 || list.Backups[0].ID != id || !list.Backups[0].Complete {
		t.Fatalf("backup list: exit %d\n%s\n%s", code, out, errOut)
	}

	// A manifest without its HMAC: restore refuses it, and restores it
	// with --trust-unsigned after a warning on stderr.
	key := "neo4j/" + id + "/manifest.json"
	var m map[string]any
	if err := json.Unmarshal(s3.Get(t, key), &m); err != nil || m["hmac"] == nil {
		t.Fatalf("manifest: %v %v", m, err)
	}
	delete(m, "hmac")
	unsigned, _ := json.Marshal(m)
	if _, err := s3.Client.PutObject(context.Background(), s3.Bucket, key, bytes.NewReader(unsigned), int64(len(unsigned)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "", "backup", "restore", id, "--yes", "--root", root.Dir)
	if code != 1 || !strings.Contains(errOut, "unsigned") || !strings.Contains(errOut, "--trust-unsigned") {
		t.Fatalf("restore of an unsigned manifest: exit %d\n%s", code, errOut)
	}
	code, out, errOut = run(t, "", "backup", "restore", id, "--yes", "--trust-unsigned", "--root", root.Dir)
	if code != 0 || !strings.Contains(out, "restored backup "+id) || !strings.Contains(errOut, "warning: restoring backup "+id) {
		t.Fatalf("restore --trust-unsigned: exit %d\n%s\n%s", code, out, errOut)
	}
	db.WaitHealthy(t)

	code, out, errOut = run(t, "", "monitor", "--once", "--root", root.Dir)
	var v monitor.View
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !v.BackupOK || v.BackupAgeSeconds < 0 || !v.BoltUp || !v.HTTPUp {
		t.Fatalf("monitor --once: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(root.Path(c.Dir), id)); err == nil {
		t.Error("local copy left after the upload")
	}
}

func TestBackupListShowsQuarantine(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var b strings.Builder
	err := printBackups(&b, []backup.Listed{
		{ID: "20260302T000000Z", At: at.Add(24 * time.Hour), Complete: true, Size: 10},
		{ID: "20260301T000000Z", At: at, Quarantined: true, Err: errors.New("manifest neo4j/prod/quarantine/20260301T000000Z/manifest.json: not valid JSON")},
		{ID: "20260228T000000Z", At: at.Add(-24 * time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20260302T000000Z  2026-03-02 00:00  10 B  complete", "QUARANTINED: manifest neo4j/prod/quarantine/20260301T000000Z/manifest.json: not valid JSON", "incomplete (no manifest)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("backup list lacks %q:\n%s", want, b.String())
		}
	}
}
