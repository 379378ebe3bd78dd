package metadata

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/retry"
)

func TestParseSample(t *testing.T) {
	m, err := ReadFile("testdata/droplet.json")
	if err != nil {
		t.Fatal(err)
	}
	want := Metadata{
		DropletID:   "2756294",
		Hostname:    "api-1",
		Region:      "nyc3",
		Tags:        []string{"codelab", "codelab-consul"},
		PublicKeys:  []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ6WjQW4a6d/ZdUlqLJ2l3kK7m8Yv1GSk0GwZ+u7ZzHx ops@codelab"},
		UserData:    "#codelab v1 role=api env=prod consul=client",
		PrivateIPv4: "10.132.0.5",
		PublicIPv4:  "104.131.20.105",
		AnchorIPv4:  "10.17.0.5",
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got  %+v\nwant %+v", m, want)
	}
}

// base is a minimal valid document; cases patch fields into it.
func doc(fields string) string {
	return `{"hostname":"h","region":"fra1"` + fields + `}`
}

func TestParseQuirks(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		check   func(t *testing.T, m Metadata)
		wantErr string
	}{
		{name: "droplet_id number", in: doc(`,"droplet_id":123`), check: func(t *testing.T, m Metadata) {
			if m.DropletID != "123" {
				t.Errorf("DropletID = %q", m.DropletID)
			}
		}},
		{name: "droplet_id string", in: doc(`,"droplet_id":"456"`), check: func(t *testing.T, m Metadata) {
			if m.DropletID != "456" {
				t.Errorf("DropletID = %q", m.DropletID)
			}
		}},
		{name: "droplet_id missing", in: doc(``), wantErr: "no droplet_id"},
		{name: "droplet_id garbage", in: doc(`,"droplet_id":"abc"`), wantErr: `droplet_id "abc"`},
		{name: "public_keys string with two keys", in: doc(`,"droplet_id":1,"public_keys":"ssh-ed25519 A a\nssh-rsa B b\n"`), check: func(t *testing.T, m Metadata) {
			if !reflect.DeepEqual(m.PublicKeys, []string{"ssh-ed25519 A a", "ssh-rsa B b"}) {
				t.Errorf("PublicKeys = %q", m.PublicKeys)
			}
		}},
		{name: "public_keys list", in: doc(`,"droplet_id":1,"public_keys":["k1","k2"]`), check: func(t *testing.T, m Metadata) {
			if !reflect.DeepEqual(m.PublicKeys, []string{"k1", "k2"}) {
				t.Errorf("PublicKeys = %q", m.PublicKeys)
			}
		}},
		{name: "public_keys null", in: doc(`,"droplet_id":1,"public_keys":null`), check: func(t *testing.T, m Metadata) {
			if m.PublicKeys == nil || len(m.PublicKeys) != 0 {
				t.Errorf("PublicKeys = %#v", m.PublicKeys)
			}
		}},
		{name: "public_keys number", in: doc(`,"droplet_id":1,"public_keys":5`), wantErr: "neither a string nor a list"},
		{name: "tags null", in: doc(`,"droplet_id":1,"tags":null`), check: func(t *testing.T, m Metadata) {
			if m.Tags == nil || len(m.Tags) != 0 {
				t.Errorf("Tags = %#v", m.Tags)
			}
		}},
		{name: "floating ip without address", in: doc(`,"droplet_id":1,"floating_ip":{"ipv4":{"active":false}}`), check: func(t *testing.T, m Metadata) {
			if m.ReservedIPv4 != "" {
				t.Errorf("ReservedIPv4 = %q", m.ReservedIPv4)
			}
		}},
		{name: "active reserved ip", in: doc(`,"droplet_id":1,"reserved_ip":{"ipv4":{"active":true,"ip_address":"1.2.3.4"}}`), check: func(t *testing.T, m Metadata) {
			if m.ReservedIPv4 != "1.2.3.4" {
				t.Errorf("ReservedIPv4 = %q", m.ReservedIPv4)
			}
		}},
		{name: "no private interface", in: doc(`,"droplet_id":1,"interfaces":{"public":[{"ipv4":{"ip_address":"5.6.7.8"},"anchor_ipv4":{"ip_address":"10.19.0.9"}}]}`), check: func(t *testing.T, m Metadata) {
			if m.PrivateIPv4 != "" {
				t.Errorf("PrivateIPv4 = %q, want empty (never the public or anchor address)", m.PrivateIPv4)
			}
			if _, err := m.RequirePrivateIPv4(); !errors.Is(err, ErrNoPrivateInterface) || !strings.Contains(err.Error(), "VPC") {
				t.Errorf("RequirePrivateIPv4 err = %v", err)
			}
		}},
		{name: "private interface empty list", in: doc(`,"droplet_id":1,"interfaces":{"private":[]}`), check: func(t *testing.T, m Metadata) {
			if _, err := m.RequirePrivateIPv4(); err == nil {
				t.Error("want error")
			}
		}},
		{name: "private address not ipv4", in: doc(`,"droplet_id":1,"interfaces":{"private":[{"ipv4":{"ip_address":"nope"}}]}`), wantErr: "not an IPv4 address"},
		{name: "no hostname", in: `{"droplet_id":1,"region":"x"}`, wantErr: "no hostname"},
		{name: "no region", in: `{"droplet_id":1,"hostname":"x"}`, wantErr: "no region"},
		{name: "not json", in: `<html>`, wantErr: "decode metadata JSON"},
		{name: "user_data null", in: doc(`,"droplet_id":1,"user_data":null`), check: func(t *testing.T, m Metadata) {
			if m.UserData != "" {
				t.Errorf("UserData = %q", m.UserData)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
		})
	}
}

func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

func TestFetchRetriesThenSucceeds(t *testing.T) {
	body, err := os.ReadFile("testdata/droplet.json")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata/v1.json" {
			t.Errorf("unexpected request %s", r.URL.Path)
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) < 3 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	c := Client{URL: srv.URL + "/metadata/v1.json", Retry: retry.Policy{Sleep: noSleep}}
	m, err := c.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.DropletID != "2756294" || calls.Load() != 3 {
		t.Fatalf("id=%s calls=%d", m.DropletID, calls.Load())
	}
}

func TestFetchGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	c := Client{URL: srv.URL, Retry: retry.Policy{Attempts: 4, Sleep: noSleep}}
	_, err := c.Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "after 4 attempts") || !strings.Contains(err.Error(), "502") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchNotFoundIsPermanent(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	_, err := Client{URL: srv.URL, Retry: retry.Policy{Sleep: noSleep}}.Fetch(context.Background())
	if err == nil || calls.Load() != 1 {
		t.Fatalf("err=%v calls=%d", err, calls.Load())
	}
}

func TestFetchTimesOutSlowService(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	_, err := Client{URL: srv.URL, Timeout: 50 * time.Millisecond, Retry: retry.Policy{Attempts: 2, Sleep: noSleep}}.Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Fatalf("err = %v", err)
	}
}
