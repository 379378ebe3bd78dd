package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Databases every server has, as in Neo4j 5.
var defaultDatabases = []string{"system", "neo4j"}

// lockName is the file a running server holds locked in every database
// folder (Neo4j's own is also called database_lock).
const lockName = "database_lock"

type store struct {
	data string
	mu   sync.Mutex
}

func serve(data string, args []string) error {
	for _, a := range args {
		if a != "console" {
			return fmt.Errorf("neo4j: unsupported argument %q", a)
		}
	}
	st := &store{data: data}
	var locks []*os.File
	for _, db := range defaultDatabases {
		f, err := st.open(db)
		if err != nil {
			return err
		}
		locks = append(locks, f)
	}
	defer func() {
		for _, f := range locks {
			f.Close()
		}
	}()

	httpAddr := envOr("NEO4J_STANDIN_HTTP", ":7474")
	boltAddr := envOr("NEO4J_STANDIN_BOLT", ":7687")
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("listen HTTP: %w", err)
	}
	bl, err := net.Listen("tcp", boltAddr)
	if err != nil {
		return fmt.Errorf("listen Bolt: %w", err)
	}
	go acceptBolt(bl)
	// Enterprise's backup server (server.backup.listen_address).
	backupl, err := net.Listen("tcp", envOr("NEO4J_STANDIN_BACKUP", ":6362"))
	if err != nil {
		return fmt.Errorf("listen backup: %w", err)
	}
	go st.acceptBackup(backupl)
	srv := &http.Server{Handler: st.handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		bl.Close()
		backupl.Close()
	}()
	log.Printf("neo4j-standin: started (HTTP %s, Bolt %s, data %s)", httpAddr, boltAddr, data)
	if err := srv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Printf("neo4j-standin: stopped")
	return nil
}

// open creates the database's folders when missing and locks it.
func (st *store) open(db string) (*os.File, error) {
	dir := filepath.Join(st.data, "databases", db)
	for _, d := range []string{dir, filepath.Join(st.data, "transactions", db)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	nodes := filepath.Join(dir, "nodes.json")
	if _, err := os.Stat(nodes); errors.Is(err, os.ErrNotExist) {
		initial := map[string]string{}
		if db == "system" {
			initial["user:neo4j"] = "admin"
		}
		if err := writeJSON(nodes, initial); err != nil {
			return nil, err
		}
	}
	f, err := lockDatabase(dir)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", db, err)
	}
	return f, nil
}

func (st *store) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"bolt_direct":   "bolt://" + hostOnly(r.Host) + ":7687",
			"neo4j_version": "5.26.0-standin",
			"neo4j_edition": "community",
		})
	})
	mux.HandleFunc("GET /standin/nodes", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		nodes, err := readNodes(st.nodesPath("neo4j"))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(nodes)
	})
	mux.HandleFunc("GET /standin/nodes/{key}", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		nodes, err := readNodes(st.nodesPath("neo4j"))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		v, ok := nodes[r.PathValue("key")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, v)
	})
	mux.HandleFunc("PUT /standin/nodes/{key}", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		path := st.nodesPath("neo4j")
		nodes, err := readNodes(path)
		if err == nil {
			nodes[r.PathValue("key")] = string(b)
			err = writeJSON(path, nodes)
		}
		if err == nil {
			err = st.appendTx("neo4j", "SET "+r.PathValue("key"))
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func (st *store) nodesPath(db string) string {
	return filepath.Join(st.data, "databases", db, "nodes.json")
}

func (st *store) appendTx(db, line string) error {
	f, err := os.OpenFile(filepath.Join(st.data, "transactions", db, "neostore.transaction.db.0"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339Nano), line)
	return err
}

// acceptBackup serves "BACKUP <db>\n" with a consistent dump of the
// running database.
func (st *store) acceptBackup(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Minute))
			line, err := bufio.NewReader(c).ReadString('\n')
			db, ok := strings.CutPrefix(strings.TrimSpace(line), "BACKUP ")
			if err != nil || !ok {
				return
			}
			st.mu.Lock()
			body, err := buildDump(st.data, db)
			st.mu.Unlock()
			if err != nil {
				log.Printf("neo4j-standin: backup of %s: %v", db, err)
				return
			}
			c.Write(body)
		}(c)
	}
}

// acceptBolt answers Bolt's handshake (magic 0x6060B017 and four proposed
// versions) with version 5.4, then waits for the client to go away.
func acceptBolt(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 20)
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if string(buf[:4]) != "\x60\x60\xb0\x17" {
				return
			}
			c.Write([]byte{0, 0, 4, 5})
			io.Copy(io.Discard, c)
		}(c)
	}
}

func readNodes(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	nodes := map[string]string{}
	if err := json.Unmarshal(b, &nodes); err != nil {
		return nil, fmt.Errorf("store %s is damaged: %w", path, err)
	}
	return nodes, nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// lockDatabase takes the database folder's lock without waiting.
func lockDatabase(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errInUse
		}
		return nil, err
	}
	return f, nil
}

var errInUse = errors.New("the database is in use by a running Neo4j server; stop it and try again")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSpace(hostport)
}
