// Package metadata reads a droplet's own description from the DigitalOcean
// metadata service (or a JSON file with the same shape) and normalises the
// service's quirks into one typed value.
package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/codelab-app/infra/agent/internal/retry"
)

// DefaultURL is production's metadata endpoint.
const DefaultURL = "http://169.254.169.254/metadata/v1.json"

// EnvURL overrides DefaultURL, for tests and the local DigitalOcean.
const EnvURL = "CODELAB_METADATA_URL"

// maxBody bounds what we read from the service; user_data alone is at most
// 64 KiB on DigitalOcean.
const maxBody = 1 << 20

// Metadata is what the agent needs to know about its droplet.
type Metadata struct {
	DropletID  string // always a string, whatever the service sent
	Hostname   string
	Region     string
	Tags       []string // never nil
	PublicKeys []string // never nil
	UserData   string
	// PrivateIPv4 is the VPC address (interfaces.private[0].ipv4.ip_address);
	// empty when the droplet has no private interface.
	PrivateIPv4 string
	// PublicIPv4 is reported for status only. Consul never binds to it.
	PublicIPv4 string
	// AnchorIPv4 is the public interface's anchor address (reserved IPs);
	// Consul must never bind to it either.
	AnchorIPv4   string
	ReservedIPv4 string // empty when no reserved (floating) IP is assigned
}

// ErrNoPrivateInterface is returned by RequirePrivateIPv4.
var ErrNoPrivateInterface = errors.New("droplet has no private (VPC) interface: Consul binds only to the VPC address; create the droplet in a VPC (DigitalOcean enables private networking with a VPC by default) and check interfaces.private in the metadata")

// RequirePrivateIPv4 returns the VPC address or a clear error.
func (m Metadata) RequirePrivateIPv4() (string, error) {
	if m.PrivateIPv4 == "" {
		return "", ErrNoPrivateInterface
	}
	return m.PrivateIPv4, nil
}

// wire is the service's JSON. Fields whose type the service varies are
// json.RawMessage and normalised in Parse.
type wire struct {
	DropletID  json.RawMessage `json:"droplet_id"`
	Hostname   string          `json:"hostname"`
	Region     string          `json:"region"`
	UserData   *string         `json:"user_data"`
	PublicKeys json.RawMessage `json:"public_keys"`
	Tags       []string        `json:"tags"`
	Interfaces struct {
		Public  []wireInterface `json:"public"`
		Private []wireInterface `json:"private"`
	} `json:"interfaces"`
	FloatingIP wireFloating `json:"floating_ip"`
	ReservedIP wireFloating `json:"reserved_ip"`
}

type wireInterface struct {
	IPv4 *struct {
		IPAddress string `json:"ip_address"`
	} `json:"ipv4"`
	AnchorIPv4 *struct {
		IPAddress string `json:"ip_address"`
	} `json:"anchor_ipv4"`
}

type wireFloating struct {
	IPv4 *struct {
		Active    bool   `json:"active"`
		IPAddress string `json:"ip_address"`
	} `json:"ipv4"`
}

// Parse decodes the service's v1.json.
func Parse(data []byte) (Metadata, error) {
	var w wire
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&w); err != nil {
		return Metadata{}, fmt.Errorf("decode metadata JSON: %w", err)
	}
	var m Metadata
	id, err := dropletID(w.DropletID)
	if err != nil {
		return Metadata{}, err
	}
	m.DropletID = id
	m.Hostname = strings.TrimSpace(w.Hostname)
	if m.Hostname == "" {
		return Metadata{}, errors.New("metadata has no hostname")
	}
	m.Region = strings.TrimSpace(w.Region)
	if m.Region == "" {
		return Metadata{}, errors.New("metadata has no region")
	}
	if w.UserData != nil {
		m.UserData = *w.UserData
	}
	m.Tags = append([]string{}, w.Tags...) // tags: null becomes empty
	keys, err := publicKeys(w.PublicKeys)
	if err != nil {
		return Metadata{}, err
	}
	m.PublicKeys = keys
	if len(w.Interfaces.Private) > 0 && w.Interfaces.Private[0].IPv4 != nil {
		ip := strings.TrimSpace(w.Interfaces.Private[0].IPv4.IPAddress)
		if ip != "" {
			if p := net.ParseIP(ip); p == nil || p.To4() == nil {
				return Metadata{}, fmt.Errorf("metadata interfaces.private[0].ipv4.ip_address %q is not an IPv4 address", ip)
			}
			m.PrivateIPv4 = ip
		}
	}
	if len(w.Interfaces.Public) > 0 {
		pub := w.Interfaces.Public[0]
		if pub.IPv4 != nil {
			m.PublicIPv4 = pub.IPv4.IPAddress
		}
		if pub.AnchorIPv4 != nil {
			m.AnchorIPv4 = pub.AnchorIPv4.IPAddress
		}
	}
	for _, f := range []wireFloating{w.ReservedIP, w.FloatingIP} {
		if f.IPv4 != nil && f.IPv4.Active && f.IPv4.IPAddress != "" {
			m.ReservedIPv4 = f.IPv4.IPAddress
			break
		}
	}
	return m, nil
}

func dropletID(raw json.RawMessage) (string, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return "", errors.New("metadata has no droplet_id")
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return "", fmt.Errorf("decode droplet_id: %w", err)
		}
		s = strings.TrimSpace(str)
	}
	if _, err := strconv.ParseUint(s, 10, 64); err != nil {
		return "", fmt.Errorf("metadata droplet_id %q is not a positive integer", s)
	}
	return s, nil
}

func publicKeys(raw json.RawMessage) ([]string, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "" || s == "null":
		return []string{}, nil
	case strings.HasPrefix(s, "["):
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("decode public_keys list: %w", err)
		}
		out := []string{}
		for _, k := range list {
			out = append(out, splitKeys(k)...)
		}
		return out, nil
	case strings.HasPrefix(s, `"`):
		var one string
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("decode public_keys: %w", err)
		}
		return splitKeys(one), nil
	default:
		return nil, fmt.Errorf("metadata public_keys is neither a string nor a list: %.40s", s)
	}
}

func splitKeys(s string) []string {
	out := []string{}
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// ReadFile reads a metadata JSON file (--metadata-file).
func ReadFile(path string) (Metadata, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Metadata{}, fmt.Errorf("read metadata file: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return Metadata{}, fmt.Errorf("metadata file %s: %w", path, err)
	}
	return m, nil
}

// Client fetches metadata over HTTP.
type Client struct {
	URL     string        // default DefaultURL
	HTTP    *http.Client  // default: a client with Timeout
	Timeout time.Duration // per request; default 5s
	Retry   retry.Policy  // default: 0.5s doubling to 10s, until ctx ends
}

// Fetch gets and parses metadata, retrying transient failures (the link-local
// service is often not reachable for the first seconds of a boot) until ctx
// ends or the policy's attempts run out.
func (c Client) Fetch(ctx context.Context) (Metadata, error) {
	url := c.URL
	if url == "" {
		url = DefaultURL
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: timeout}
	}
	pol := c.Retry
	if pol.Initial == 0 {
		pol.Initial = 500 * time.Millisecond
	}
	var m Metadata
	err := retry.Do(ctx, pol, func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			return retry.Permanent(fmt.Errorf("metadata URL %q: %w", url, err))
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("get %s: %w", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err != nil {
			return fmt.Errorf("read %s: %w", url, err)
		}
		if len(body) > maxBody {
			return retry.Permanent(fmt.Errorf("get %s: response larger than %d bytes", url, maxBody))
		}
		if resp.StatusCode != http.StatusOK {
			err := fmt.Errorf("get %s: %s", url, resp.Status)
			if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
				return retry.Permanent(err)
			}
			return err
		}
		m, err = Parse(body)
		if err != nil {
			return retry.Permanent(fmt.Errorf("metadata from %s: %w", url, err))
		}
		return nil
	})
	if err != nil {
		return Metadata{}, fmt.Errorf("fetch droplet metadata: %w", err)
	}
	return m, nil
}
