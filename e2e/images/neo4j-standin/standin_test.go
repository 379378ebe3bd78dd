package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDumpCheckLoadRoundTrip(t *testing.T) {
	data, backups := t.TempDir(), t.TempDir()
	st := &store{data: data}
	lock, err := st.open("neo4j")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(st.nodesPath("neo4j"), map[string]string{"alice": "knows bob"}); err != nil {
		t.Fatal(err)
	}
	if err := admin(data, []string{"database", "dump", "neo4j", "--to-path=" + backups}, io.Discard); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("dump of a running database: %v", err)
	}
	if err := lock.Close(); err != nil { // the server stopped
		t.Fatal(err)
	}
	if err := admin(data, []string{"database", "dump", "neo4j", "--to-path", backups}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := admin(data, []string{"database", "check", "neo4j", "--from-path=" + backups, "--temp-path=" + backups}, io.Discard); err != nil {
		t.Fatalf("check of a good dump: %v", err)
	}
	fresh := t.TempDir()
	if err := admin(fresh, []string{"database", "load", "neo4j", "--from-path=" + backups, "--overwrite-destination=true"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	nodes, err := readNodes(filepath.Join(fresh, "databases", "neo4j", "nodes.json"))
	if err != nil || nodes["alice"] != "knows bob" {
		t.Fatalf("loaded store = %v, %v", nodes, err)
	}

	// One flipped byte in the payload: check fails.
	dump := filepath.Join(backups, "neo4j.dump")
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 0xff
	if err := os.WriteFile(dump, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := admin(data, []string{"database", "check", "neo4j", "--from-path=" + backups}, io.Discard); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("check of a damaged dump: %v", err)
	}
}

func TestAdminRejectsWhatItDoesNotKnow(t *testing.T) {
	for _, args := range [][]string{
		{"database", "dump", "neo4j", "--to-path=/x", "--compress=zstd"},
		{"database", "copy", "neo4j"},
		{"dbms", "set-initial-password", "x"},
		{"database", "load", "neo4j", "system", "--from-path=/x"},
	} {
		if err := admin(t.TempDir(), args, io.Discard); err == nil {
			t.Errorf("neo4j-admin %v accepted", args)
		}
	}
}
