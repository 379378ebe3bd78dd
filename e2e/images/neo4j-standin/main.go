// Command neo4j-standin is a small stand-in for the official Neo4j 5 image,
// for tests on machines that cannot pull it. It behaves like the official
// image at the seams codelab-agent touches, and nowhere else:
//
//   - `neo4j` (the image's default command) serves HTTP on 7474 and accepts
//     Bolt handshakes on 7687, keeps its databases as files under
//     /data/databases/<db>/ and /data/transactions/<db>/, and holds a lock
//     file in every database folder while it runs;
//   - `neo4j-admin database dump|load|check` take the same arguments as
//     Neo4j 5's and read and write <db>.dump files; dump and load refuse a
//     database that a running server holds, as Community does;
//   - Enterprise's online `neo4j-admin database backup --from=HOST:PORT`
//     (the server answers on 6362) writes <db>-<time>.backup files, which
//     `database check --from-path` and `database restore --from-path=FILE`
//     read;
//   - `wget -q -O /dev/null URL` exists for the Compose healthcheck (the
//     official image ships wget).
//
// The program dispatches on the name it was started as. The store is a
// JSON map of node key to value, which tests write and read through
// PUT/GET /standin/nodes/<key> and GET /standin/nodes.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "neo4j-standin" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	var err error
	switch name {
	case "neo4j", "neo4j-standin":
		err = serve(dataDir(), args)
	case "neo4j-admin":
		err = admin(dataDir(), args, os.Stdout)
	case "wget":
		err = wget(args)
	default:
		err = fmt.Errorf("neo4j-standin: unknown program name %q", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// dataDir is /data, or NEO4J_STANDIN_DATA for tests outside a container.
func dataDir() string {
	if d := os.Getenv("NEO4J_STANDIN_DATA"); d != "" {
		return d
	}
	return "/data"
}
