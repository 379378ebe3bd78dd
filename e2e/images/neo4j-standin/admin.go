package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// dumpMagic starts every stand-in dump; a JSON header line and a gzip'd tar
// of the database's store and transaction folders follow.
const dumpMagic = "NEO4J-STANDIN-DUMP 1\n"

type dumpHeader struct {
	Database      string `json:"database"`
	PayloadSHA256 string `json:"payloadSha256"`
	PayloadSize   int64  `json:"payloadSize"`
}

// admin implements the subset of `neo4j-admin` that codelab-agent uses,
// with Neo4j 5's syntax.
func admin(data string, args []string, out io.Writer) error {
	if len(args) < 2 || args[0] != "database" {
		return fmt.Errorf("neo4j-admin: unsupported command %q (the stand-in knows database dump|load|check)", strings.Join(args, " "))
	}
	verb := args[1]
	spec := map[string]map[string]bool{ // flag -> takes a value
		"dump":  {"to-path": true, "overwrite-destination": false, "verbose": false, "expand-commands": false, "additional-config": true},
		"load":  {"from-path": true, "overwrite-destination": false, "verbose": false, "expand-commands": false, "additional-config": true, "info": false},
		"check": {"from-path": true, "temp-path": true, "report-path": true, "verbose": false, "force": false, "expand-commands": false, "additional-config": true, "threads": true, "max-off-heap-memory": true},
		// Enterprise.
		"backup":  {"from": true, "to-path": true, "type": true, "verbose": false, "expand-commands": false, "additional-config": true},
		"restore": {"from-path": true, "overwrite-destination": false, "verbose": false, "expand-commands": false, "additional-config": true},
	}[verb]
	if spec == nil {
		return fmt.Errorf("neo4j-admin database: unsupported command %q", verb)
	}
	flags, pos, err := parseFlags(args[2:], spec)
	if err != nil {
		return fmt.Errorf("neo4j-admin database %s: %w", verb, err)
	}
	if verb == "backup" {
		return backup(flags, pos, out)
	}
	if len(pos) != 1 {
		return fmt.Errorf("neo4j-admin database %s: want exactly one <database>, got %q", verb, pos)
	}
	db := pos[0]
	switch verb {
	case "dump":
		to := flags["to-path"]
		if to == "" {
			return errors.New("neo4j-admin database dump: the stand-in needs --to-path")
		}
		return dump(data, db, to, flags["overwrite-destination"] == "true", out)
	case "load":
		from := flags["from-path"]
		if from == "" {
			return errors.New("neo4j-admin database load: the stand-in needs --from-path")
		}
		return load(data, db, from, flags["overwrite-destination"] == "true", out)
	case "restore":
		from := flags["from-path"]
		if from == "" {
			return errors.New("neo4j-admin database restore: the stand-in needs --from-path")
		}
		return loadFile(data, db, from, flags["overwrite-destination"] == "true", out)
	default:
		return check(data, db, flags["from-path"], out)
	}
}

// parseFlags reads --name=value, --name value and boolean --name[=true|false].
func parseFlags(args []string, spec map[string]bool) (map[string]string, []string, error) {
	flags := map[string]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		takesValue, ok := spec[name]
		if !ok {
			return nil, nil, fmt.Errorf("unknown option --%s", name)
		}
		switch {
		case takesValue && !hasVal:
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("option --%s needs a value", name)
			}
			i++
			val = args[i]
		case !takesValue && !hasVal:
			val = "true"
		case !takesValue && val != "true" && val != "false":
			return nil, nil, fmt.Errorf("option --%s takes true or false, not %q", name, val)
		}
		flags[name] = val
	}
	return flags, pos, nil
}

func dump(data, db, toDir string, overwrite bool, out io.Writer) error {
	dbDir := filepath.Join(data, "databases", db)
	if _, err := os.Stat(filepath.Join(dbDir, "nodes.json")); err != nil {
		return fmt.Errorf("database does not exist: %s", db)
	}
	lock, err := lockDatabase(dbDir)
	if err != nil {
		return fmt.Errorf("dump %s: %w", db, err)
	}
	defer lock.Close()

	body, err := buildDump(data, db)
	if err != nil {
		return fmt.Errorf("dump %s: %w", db, err)
	}
	path := filepath.Join(toDir, db+".dump")
	flag := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if !overwrite {
		flag |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("archive already exists: %s", path)
		}
		return fmt.Errorf("dump %s: %w", db, err)
	}
	w := bufio.NewWriter(f)
	w.Write(body)
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("dump %s to %s: %w", db, path, err)
	}
	fmt.Fprintf(out, "Done: dumped database %s to %s\n", db, path)
	return nil
}

// buildDump archives a database's store and transaction folders.
func buildDump(data, db string) ([]byte, error) {
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	tw := tar.NewWriter(zw)
	for _, part := range []string{"databases", "transactions"} {
		if err := addTree(tw, filepath.Join(data, part, db), part); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(payload.Bytes())
	hdr, _ := json.Marshal(dumpHeader{Database: db, PayloadSHA256: hex.EncodeToString(sum[:]), PayloadSize: int64(payload.Len())})
	var out bytes.Buffer
	out.WriteString(dumpMagic)
	out.Write(hdr)
	out.WriteString("\n")
	out.Write(payload.Bytes())
	return out.Bytes(), nil
}

func addTree(tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() == lockName {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: prefix + "/" + filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
}

// readDump verifies a dump's format and checksum and returns its files
// (databases/<rel> and transactions/<rel>).
func readDump(path, db string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseDump(b, path, db)
}

func parseDump(b []byte, path, db string) (map[string][]byte, error) {
	if !bytes.HasPrefix(b, []byte(dumpMagic)) {
		return nil, fmt.Errorf("%s is not a Neo4j dump (bad magic)", path)
	}
	rest := b[len(dumpMagic):]
	line, payload, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%s: truncated header", path)
	}
	var hdr dumpHeader
	if err := json.Unmarshal(line, &hdr); err != nil {
		return nil, fmt.Errorf("%s: damaged header: %w", path, err)
	}
	if hdr.Database != db {
		return nil, fmt.Errorf("%s holds database %q, not %q", path, hdr.Database, db)
	}
	if int64(len(payload)) != hdr.PayloadSize {
		return nil, fmt.Errorf("%s: payload is %d bytes, header says %d (truncated?)", path, len(payload), hdr.PayloadSize)
	}
	sum := sha256.Sum256(payload)
	if hex.EncodeToString(sum[:]) != hdr.PayloadSHA256 {
		return nil, fmt.Errorf("%s: payload checksum mismatch: the dump is damaged", path)
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if strings.Contains(h.Name, "..") || !(strings.HasPrefix(h.Name, "databases/") || strings.HasPrefix(h.Name, "transactions/")) {
			return nil, fmt.Errorf("%s: unexpected entry %q", path, h.Name)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		files[h.Name] = body
	}
	nodes, ok := files["databases/nodes.json"]
	if !ok {
		return nil, fmt.Errorf("%s: no store in the dump", path)
	}
	if err := json.Unmarshal(nodes, &map[string]string{}); err != nil {
		return nil, fmt.Errorf("%s: store is inconsistent: %w", path, err)
	}
	return files, nil
}

func load(data, db, fromDir string, overwrite bool, out io.Writer) error {
	return loadFile(data, db, filepath.Join(fromDir, db+".dump"), overwrite, out)
}

// loadFile replaces the database with a dump or backup file.
func loadFile(data, db, file string, overwrite bool, out io.Writer) error {
	files, err := readDump(file, db)
	if err != nil {
		return fmt.Errorf("load %s: %w", db, err)
	}
	dbDir := filepath.Join(data, "databases", db)
	txDir := filepath.Join(data, "transactions", db)
	if _, err := os.Stat(filepath.Join(dbDir, "nodes.json")); err == nil && !overwrite {
		return fmt.Errorf("database already exists: %s (use --overwrite-destination=true)", db)
	}
	if err := os.MkdirAll(dbDir, 0o755); err != nil {
		return err
	}
	lock, err := lockDatabase(dbDir)
	if err != nil {
		return fmt.Errorf("load %s: %w", db, err)
	}
	defer lock.Close()
	for _, d := range []string{dbDir, txDir} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.Name() != lockName {
				if err := os.RemoveAll(filepath.Join(d, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	for name, body := range files {
		part, rel, _ := strings.Cut(name, "/")
		target := filepath.Join(data, part, db, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(target, body, 0o644); err != nil {
			return fmt.Errorf("load %s: %w", db, err)
		}
	}
	fmt.Fprintf(out, "Done: loaded database %s from %s\n", db, file)
	return nil
}

func check(data, db, fromDir string, out io.Writer) error {
	if fromDir != "" {
		file := filepath.Join(fromDir, db+".dump")
		if _, err := os.Stat(file); err != nil {
			// An Enterprise backup folder: the newest <db>-<time>.backup.
			m, _ := filepath.Glob(filepath.Join(fromDir, db+"-*.backup"))
			if len(m) == 0 {
				return fmt.Errorf("check %s: no %s.dump or %s-*.backup in %s", db, db, db, fromDir)
			}
			sort.Strings(m)
			file = m[len(m)-1]
		}
		if _, err := readDump(file, db); err != nil {
			return fmt.Errorf("check %s: %w", db, err)
		}
		fmt.Fprintf(out, "Database %s in %s is consistent\n", db, fromDir)
		return nil
	}
	dbDir := filepath.Join(data, "databases", db)
	lock, err := lockDatabase(dbDir)
	if err != nil {
		return fmt.Errorf("check %s: %w", db, err)
	}
	defer lock.Close()
	if _, err := readNodes(filepath.Join(dbDir, "nodes.json")); err != nil {
		return fmt.Errorf("check %s: %w", db, err)
	}
	fmt.Fprintf(out, "Database %s is consistent\n", db)
	return nil
}

// backup is Enterprise's online `database backup --from=HOST:PORT
// --to-path=DIR db...`: the running server streams a consistent copy of
// each database, written as DIR/<db>-<time>.backup.
func backup(flags map[string]string, dbs []string, out io.Writer) error {
	from, to := flags["from"], flags["to-path"]
	if from == "" || to == "" || len(dbs) == 0 {
		return errors.New("neo4j-admin database backup: the stand-in needs --from, --to-path and databases")
	}
	if t := flags["type"]; t != "" && t != "FULL" && t != "AUTO" {
		return fmt.Errorf("neo4j-admin database backup: --type=%s: the stand-in knows FULL and AUTO", t)
	}
	stamp := time.Now().UTC().Format("2006-01-02T15-04-05")
	for _, db := range dbs {
		c, err := net.DialTimeout("tcp", from, 10*time.Second)
		if err != nil {
			return fmt.Errorf("backup %s from %s: %w", db, from, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Minute))
		fmt.Fprintf(c, "BACKUP %s\n", db)
		body, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			return fmt.Errorf("backup %s: %w", db, err)
		}
		if _, err := parseDump(body, from, db); err != nil {
			return fmt.Errorf("backup %s: %w", db, err)
		}
		path := filepath.Join(to, db+"-"+stamp+".backup")
		if err := os.WriteFile(path, body, 0o644); err != nil {
			os.Remove(path)
			return fmt.Errorf("backup %s: %w", db, err)
		}
		fmt.Fprintf(out, "Backup of %s written to %s\n", db, path)
	}
	return nil
}
