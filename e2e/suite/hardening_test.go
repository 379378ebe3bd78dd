package suite

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/e2e/internal/cluster"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// hardening shows, on the running demo cluster, the parts of the security
// issue that backups and env files carry: a tampered backup manifest is
// refused with nothing written outside the restore folder, a restore whose
// second database fails leaves the old data running, and a Consul KV value
// with a newline does not reach the container. Each subtest leaves the
// cluster as it found it (ready, its backups intact).
type hardening struct {
	faults
}

func (h hardening) run(t *testing.T) {
	t.Run("hardening", func(t *testing.T) {
		t.Run("a tampered backup manifest (a traversal name, a bad HMAC) is refused, nothing written outside the restore folder", h.tamperedManifest)
		t.Run("a restore whose second database fails leaves the old data running", h.failedRestore)
		t.Run("a Consul KV value with a newline does not reach the api container", h.newlineValue)
	})
}

// manifest is the e2e suite's copy of the agent's backup manifest
// (agent/internal/backup.Manifest, which another module cannot import):
// same fields in the same order, so that its JSON encoding, and so its
// HMAC, is the agent's. signedBackup checks that against a manifest the
// agent wrote, so a drift fails loudly instead of faking a refusal.
type manifest struct {
	SchemaVersion int            `json:"schemaVersion"`
	ID            string         `json:"id"`
	CreatedAt     time.Time      `json:"createdAt"`
	Edition       string         `json:"edition"`
	Image         string         `json:"image"`
	Databases     []string       `json:"databases"`
	Files         []manifestFile `json:"files"`
	DowntimeMS    int64          `json:"downtimeMs"`
	Verified      bool           `json:"verified"`
	HMAC          string         `json:"hmac,omitempty"`
}

type manifestFile struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"sizeBytes"`
	SHA256    string `json:"sha256"`
}

func (m manifest) mac(key string) string {
	m.HMAC = ""
	b, _ := json.Marshal(m)
	h := hmac.New(sha256.New, []byte(key))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func (m *manifest) setFile(name string, body []byte) {
	sum := sha256.Sum256(body)
	f := manifestFile{Name: name, SizeBytes: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
	for i := range m.Files {
		if m.Files[i].Name == name {
			m.Files[i] = f
			return
		}
	}
	m.Files = append(m.Files, f)
}

// restoreBench is what the restore subtests share: the neo4j droplet, the
// bucket as the host reaches it, and a backup the agent made and signed.
type restoreBench struct {
	neo    *cluster.Node
	mc     *minio.Client
	bucket string
	prefix string // the backups' key prefix with its slash, "neo4j/demo/"
	key    string // the manifest key
	real   manifest
	files  map[string][]byte // the real backup's files
}

const markerKey = "e2e-hardening"

// bench runs a backup on the neo4j droplet, with the marker set to value
// first, and reads it back from the bucket.
func (h hardening) bench(t *testing.T, value string) *restoreBench {
	t.Helper()
	neo := h.node(t, "neo4j-1")
	h.ready(t, neo, 2*time.Minute, time.Time{})
	s := h.c.Spaces
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(h.exec(t, neo, "cat", "/root/docker/neo4j/spaces.json"), s.Endpoint) {
		if time.Now().After(deadline) {
			t.Fatal("spaces.json never got the local Spaces endpoint")
		}
		time.Sleep(time.Second)
	}
	var cfg struct {
		Prefix string `json:"prefix"`
	}
	if err := json.Unmarshal([]byte(h.exec(t, neo, "cat", "/root/docker/neo4j/backup.json")), &cfg); err != nil || cfg.Prefix == "" {
		t.Fatalf("backup.json: prefix %q, %v", cfg.Prefix, err)
	}
	mc, err := minio.New(s.Local, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: s.Region})
	if err != nil {
		t.Fatal(err)
	}
	b := &restoreBench{neo: neo, mc: mc, bucket: s.Bucket, prefix: strings.Trim(cfg.Prefix, "/") + "/",
		key: h.c.SpacesSettings()["codelab/"+h.c.Opts.Env+"/backup/manifest_key"], files: map[string][]byte{}}
	if b.key == "" {
		t.Fatal("the demo sets no manifest key")
	}

	h.putMarker(t, neo, value)
	before := h.list(t, neo).complete()
	start := time.Now()
	h.exec(t, neo, "codelab-agent", "backup", "run", "--ignore-window")
	t.Logf("backup run in %s", time.Since(start).Round(100*time.Millisecond))
	id := ""
	for got := range h.list(t, neo).complete() {
		if !before[got] && got > id {
			id = got
		}
	}
	if id == "" {
		t.Fatal("the backup run listed no new complete backup")
	}
	h.ready(t, neo, 3*time.Minute, time.Time{})

	raw := b.get(t, b.prefix+id+"/manifest.json")
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.real); err != nil {
		t.Fatalf("the agent's manifest %s does not fit the suite's copy of the format: %v", id, err)
	}
	if got := b.real.mac(b.key); got != b.real.HMAC {
		t.Fatalf("the suite's copy of the manifest format signs %s as %s, the agent as %s: bring manifest up to date with the agent's", id, got, b.real.HMAC)
	}
	for _, f := range b.real.Files {
		b.files[f.Name] = b.get(t, b.prefix+id+"/"+f.Name)
	}
	return b
}

func (b *restoreBench) get(t *testing.T, key string) []byte {
	t.Helper()
	o, err := b.mc.GetObject(context.Background(), b.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer o.Close()
	body, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return body
}

// upload puts a backup (its files, then its manifest, as a run does) into
// the bucket under m.ID, and removes it when the test ends.
func (b *restoreBench) upload(t *testing.T, m manifest, files map[string][]byte) {
	t.Helper()
	base := b.prefix + m.ID + "/"
	put := func(name string, body []byte) {
		if _, err := b.mc.PutObject(context.Background(), b.bucket, base+name, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %s: %v", base+name, err)
		}
	}
	t.Cleanup(func() {
		for o := range b.mc.ListObjects(context.Background(), b.bucket, minio.ListObjectsOptions{Prefix: base, Recursive: true}) {
			if o.Err == nil {
				o.Err = b.mc.RemoveObject(context.Background(), b.bucket, o.Key, minio.RemoveObjectOptions{})
			}
			if o.Err != nil {
				t.Errorf("remove %s from the bucket: %v", o.Key, o.Err)
			}
		}
	})
	for name, body := range files {
		put(name, body)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	put("manifest.json", append(mb, '\n'))
}

// copyOf is the real backup as backup id, with its files.
func (b *restoreBench) copyOf(id string) (manifest, map[string][]byte) {
	m := b.real
	m.ID = id
	m.Files = append([]manifestFile(nil), b.real.Files...)
	files := map[string][]byte{}
	for k, v := range b.files {
		files[k] = v
	}
	return m, files
}

// standinDump is a dump in the format of the demo's neo4j stand-in
// (e2e/images/neo4j-standin, admin.go): a magic line, a JSON header, and a
// gzip'd tar of the database's files in the order given.
func standinDump(t *testing.T, db string, entries [][2]string) []byte {
	t.Helper()
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload.Bytes())
	hdr, _ := json.Marshal(map[string]any{"database": db, "payloadSha256": hex.EncodeToString(sum[:]), "payloadSize": payload.Len()})
	return append(append([]byte("NEO4J-STANDIN-DUMP 1\n"), append(hdr, '\n')...), payload.Bytes()...)
}

func nodesJSON(value string) string {
	b, _ := json.Marshal(map[string]string{markerKey: value})
	return string(b)
}

func (h hardening) nodeURL(n *cluster.Node) string {
	return "http://" + n.PrivateIP + ":7474/standin/nodes/" + markerKey
}

// putMarker sets the marker node in the neo4j database.
func (h hardening) putMarker(t *testing.T, n *cluster.Node, value string) {
	t.Helper()
	h.exec(t, n, "curl", "-fsS", "-X", "PUT", "--data-binary", value, h.nodeURL(n))
}

// marker reads the marker node; "" when the database does not answer.
func (h hardening) marker(t *testing.T, n *cluster.Node) string {
	t.Helper()
	out, err := h.c.Docker.Exec(h.ctx, n.ID, "curl", "-fsS", h.nodeURL(n))
	if err != nil {
		return ""
	}
	return out
}

// database is the neo4j container's start time and state.
func (h hardening) database(t *testing.T, n *cluster.Node) (started string, state string) {
	t.Helper()
	out := h.exec(t, n, "docker", "inspect", "-f", "{{.State.StartedAt}} {{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}", "neo4j-neo4j-1")
	started, state, _ = strings.Cut(out, " ")
	return started, state
}

// restore runs `backup restore id --yes` on the neo4j droplet and returns
// its error (with the command's standard error).
func (h hardening) restore(n *cluster.Node, id string) (string, error) {
	cctx, cancel := context.WithTimeout(h.ctx, 5*time.Minute)
	defer cancel()
	return h.c.Docker.Exec(cctx, n.ID, "codelab-agent", "backup", "restore", id, "--yes")
}

// leftovers lists what a restore left in the backup folder.
func (h hardening) leftovers(t *testing.T, n *cluster.Node) string {
	t.Helper()
	return h.exec(t, n, "sh", "-c", "ls -A /var/backups/neo4j | grep -E '^(restore|rollback)-' || true")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Backup ids of the tampered backups: in the past, so that none is ever
// the newest.
const (
	idTraversal = "20010101T000001Z"
	idBadHMAC   = "20010101T000002Z"
	idControl   = "20010101T000003Z"
	idSecondBad = "20010101T000004Z"
)

func (h hardening) tamperedManifest(t *testing.T) {
	atBackup := "at-backup-" + randomHex(4)
	b := h.bench(t, atBackup)
	neo := b.neo

	// 1. A manifest, correctly signed, whose file name climbs out of the
	// restore folder (/var/backups/neo4j/restore-<id>/../../etc/cron.d/x
	// is /var/backups/etc/cron.d/x).
	traversal := "../../etc/cron.d/x"
	cron := []byte("* * * * * root touch /tmp/e2e-pwned\n")
	m, files := b.copyOf(idTraversal)
	m.setFile(traversal, cron)
	m.HMAC = m.mac(b.key)
	b.upload(t, m, files)
	traversalField := fmt.Sprintf("files[%d].name", len(m.Files)-1)

	// 2. The real backup with its neo4j dump replaced by another one and
	// the manifest's checksum made to match, but not re-signed (the
	// HMAC key is what the attacker lacks).
	m, files = b.copyOf(idBadHMAC)
	m.HMAC = m.mac(b.key)
	files["neo4j.dump"] = standinDump(t, "neo4j", [][2]string{{"databases/nodes.json", nodesJSON("attacker")}})
	m.setFile("neo4j.dump", files["neo4j.dump"])
	b.upload(t, m, files)

	// 3. The control: the real backup under another id, signed by the
	// suite. If this one restores, the two refusals are the tampering's.
	m, files = b.copyOf(idControl)
	m.HMAC = m.mac(b.key)
	b.upload(t, m, files)

	after := "after-backup-" + randomHex(4)
	h.putMarker(t, neo, after)
	cronBefore := h.exec(t, neo, "ls", "-A", "/etc/cron.d")
	started, state := h.database(t, neo)

	for _, c := range []struct{ id, want string }{
		{idTraversal, "manifest " + b.prefix + idTraversal + "/manifest.json: " + traversalField + ": \"" + traversal + "\" is not a plain file name"},
		{idBadHMAC, "manifest " + b.prefix + idBadHMAC + "/manifest.json: HMAC does not match"},
	} {
		out, err := h.restore(neo, c.id)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("restore %s: %v %s\nwant an error with %q", c.id, err, out, c.want)
			continue
		}
		t.Logf("restore %s refused: %s", c.id, lastLine(err.Error()))
	}
	for _, p := range []string{"/var/backups/etc", "/etc/cron.d/x", "/tmp/e2e-pwned"} {
		if out, err := h.c.Docker.Exec(h.ctx, neo.ID, "test", "!", "-e", p); err != nil {
			t.Errorf("%s exists on %s after the refused restores: %v %s", p, neo.Name, err, out)
		}
	}
	if got := h.exec(t, neo, "ls", "-A", "/etc/cron.d"); got != cronBefore {
		t.Errorf("/etc/cron.d changed: %q -> %q", cronBefore, got)
	}
	if l := h.leftovers(t, neo); l != "" {
		t.Errorf("the refused restores left %s in /var/backups/neo4j", l)
	}
	if s2, st2 := h.database(t, neo); s2 != started || st2 != state || !strings.HasPrefix(st2, "running") {
		t.Errorf("the database was touched by the refused restores: started %s %s, now %s %s", started, state, s2, st2)
	}
	if got := h.marker(t, neo); got != after {
		t.Errorf("marker after the refused restores = %q, want %q", got, after)
	}

	start := time.Now()
	if out, err := h.restore(neo, idControl); err != nil {
		t.Fatalf("restore of the suite-signed copy of backup %s: %v %s", b.real.ID, err, out)
	}
	t.Logf("control: restore of a correctly signed backup in %s", time.Since(start).Round(100*time.Millisecond))
	h.ready(t, neo, 3*time.Minute, time.Time{})
	if got := h.marker(t, neo); got != atBackup {
		t.Errorf("marker after restoring the control backup = %q, want %q (the value at the backup)", got, atBackup)
	}
}

func (h hardening) failedRestore(t *testing.T) {
	b := h.bench(t, "at-backup-"+randomHex(4))
	neo := b.neo

	// The backup's system dump, then a neo4j dump that neo4j-admin
	// database check accepts and load cannot write: it holds a file and a
	// folder of the same name. The stand-in's load, like Neo4j's, has
	// already emptied the database when it fails.
	m, files := b.copyOf(idSecondBad)
	files["neo4j.dump"] = standinDump(t, "neo4j", [][2]string{
		{"databases/nodes.json", nodesJSON("half-loaded")},
		{"databases/e2e-clash", "a file"},
		{"databases/e2e-clash/inside", "and a folder"},
	})
	m.setFile("neo4j.dump", files["neo4j.dump"])
	if len(m.Databases) < 2 || m.Databases[len(m.Databases)-1] != "neo4j" {
		t.Fatalf("the backup's databases are %v; the subtest breaks the second, neo4j", m.Databases)
	}
	m.HMAC = m.mac(b.key)
	b.upload(t, m, files)

	current := "current-" + randomHex(4)
	h.putMarker(t, neo, current)
	start := time.Now()
	out, err := h.restore(neo, idSecondBad)
	if err == nil {
		t.Fatalf("the restore with a broken second database succeeded: %s", out)
	}
	msg := err.Error()
	for _, want := range []string{"restore: loaded", "database=" + m.Databases[0], "load neo4j", "rolled back: the database runs on its previous data"} {
		if !strings.Contains(msg, want) {
			t.Errorf("restore %s: %q missing from:\n%s", idSecondBad, want, msg)
		}
	}
	t.Logf("failed restore rolled back in %s: %s", time.Since(start).Round(100*time.Millisecond), lastLine(msg))
	if _, state := h.database(t, neo); state != "running/healthy" {
		t.Errorf("neo4j after the rolled-back restore: %s, want running/healthy", state)
	}
	if got := h.marker(t, neo); got != current {
		t.Errorf("marker after the rolled-back restore = %q, want the data from before it, %q", got, current)
	}
	if l := h.leftovers(t, neo); l != "" {
		t.Errorf("the rolled-back restore left %s in /var/backups/neo4j", l)
	}
	h.ready(t, neo, 3*time.Minute, time.Time{})
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func (h hardening) newlineValue(t *testing.T) {
	api, srv := h.node(t, "api-1"), h.node(t, "landing-1")
	h.ready(t, api, 2*time.Minute, time.Time{})
	name := "E2E_HARDENING"
	key := "codelab/" + h.c.Opts.Env + "/api/" + name
	const envFile = "/root/docker/api/api.env"
	inspect := func() (id string, env []string) {
		out := h.exec(t, api, "docker", "inspect", "-f", "{{.Id}} {{json .Config.Env}}", "api-api-1")
		id, js, _ := strings.Cut(out, " ")
		if err := json.Unmarshal([]byte(js), &env); err != nil {
			t.Fatalf("docker inspect api-api-1: %v: %s", err, out)
		}
		return id, env
	}
	has := func(env []string, v string) bool {
		for _, e := range env {
			if e == v {
				return true
			}
		}
		return false
	}
	waitEnv := func(what string, ok func([]string) bool) {
		t.Helper()
		start := time.Now()
		for {
			if _, env := inspect(); ok(env) {
				t.Logf("%s: %s", what, time.Since(start).Round(100*time.Millisecond))
				return
			}
			if time.Since(start) > 2*time.Minute {
				t.Fatalf("%s: not within 2 minutes", what)
			}
			time.Sleep(time.Second)
		}
	}
	t.Cleanup(func() {
		if _, err := h.c.ConsulAdmin(context.Background(), srv, "kv", "delete", key); err != nil {
			t.Errorf("consul kv delete %s: %v", key, err)
			return
		}
		waitEnv(name+" gone from the container", func(env []string) bool {
			for _, e := range env {
				if strings.HasPrefix(e, name+"=") {
					return false
				}
			}
			return true
		})
		h.ready(t, api, 3*time.Minute, time.Time{})
	})

	old := "old-" + randomHex(4)
	if err := h.c.KVPut(h.ctx, srv, key, old); err != nil {
		t.Fatal(err)
	}
	waitEnv("a good value reaches the container", func(env []string) bool { return has(env, name+"="+old) })
	id, _ := inspect()
	fileBefore := h.exec(t, api, "sha256sum", envFile)

	since := time.Now().Add(-time.Second).Unix()
	bad := old + "\nE2E_INJECTED=1"
	if err := h.c.KVPut(h.ctx, srv, key, bad); err != nil {
		t.Fatal(err)
	}
	// consul-template's refusal in its log is the sign that it saw the value.
	want := "Consul KV key " + key + " holds a newline"
	deadline := time.Now().Add(time.Minute)
	for {
		j := h.exec(t, api, "journalctl", "-u", "consul-template", "--since", fmt.Sprintf("@%d", since), "--no-pager", "-o", "cat")
		if strings.Contains(j, want) {
			t.Logf("consul-template: %s", lastLine(grepLines(j, want)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul-template's log does not name %s within a minute:\n%s", key, j)
		}
		time.Sleep(time.Second)
	}
	if got := h.exec(t, api, "sha256sum", envFile); got != fileBefore {
		t.Errorf("%s changed after the refused value: %s -> %s", envFile, fileBefore, got)
	}
	if j := h.exec(t, api, "cat", envFile); strings.Contains(j, "E2E_INJECTED") {
		t.Errorf("%s holds the injected line:\n%s", envFile, j)
	}
	id2, env := inspect()
	if id2 != id || !has(env, name+"="+old) {
		t.Errorf("the api container changed after the refused value: id %.12s -> %.12s, %s=%s in its env: %t", id, id2, name, old, has(env, name+"="+old))
	}
	for _, e := range env {
		if strings.HasPrefix(e, "E2E_INJECTED") {
			t.Errorf("the injected variable reached the container: %s", e)
		}
	}
	r, code := h.status(t, api)
	t.Logf("status of %s while the value is refused: exit %d, %s: %s", api.Name, code, r.Overall, r.Summary)

	// A good value again: the path works, so the refusal above was one.
	good := "new-" + randomHex(4) + " #$HOME \"q\" 'q'"
	if err := h.c.KVPut(h.ctx, srv, key, good); err != nil {
		t.Fatal(err)
	}
	waitEnv("a good value after the refused one reaches the container", func(env []string) bool { return has(env, name+"="+good) })
}
