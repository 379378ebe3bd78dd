package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestHandler(t *testing.T) {
	t.Setenv("CODELAB_TESTAPP_PROBE", "42")
	flag := filepath.Join(t.TempDir(), "down")
	t.Setenv("UNHEALTHY_FILE", flag)
	srv := httptest.NewServer(handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz with %s present: %v %v", flag, resp, err)
	}
	resp.Body.Close()

	resp, err = http.Get(srv.URL + "/env")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	if env["CODELAB_TESTAPP_PROBE"] != "42" {
		t.Fatalf("env = %v", env)
	}
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(handler())
	defer srv.Close()
	_, port, _ := splitHostPort(srv.Listener.Addr().String())
	if code := healthcheck(port); code != 0 {
		t.Fatalf("healthcheck = %d, want 0", code)
	}
	srv.Close()
	if code := healthcheck(port); code != 1 {
		t.Fatalf("healthcheck after close = %d, want 1", code)
	}
}

func splitHostPort(s string) (string, string, error) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return s[:i], s[i+1:], nil
		}
	}
	return s, "", nil
}
