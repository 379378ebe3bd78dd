package localdo

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// MetadataHandler serves the droplet metadata service
// (https://docs.digitalocean.com/reference/api/metadata/) to droplets: each droplet sees
// its own metadata, told apart by the request's source address. Droplets reach it at
// 169.254.169.254:80 through the redirect package droplets puts in their namespace.
func (s *Server) MetadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		s.mu.Lock()
		var d *droplet
		for _, x := range s.st.Droplets {
			if x.PublicIP == host || x.PrivateIP == host {
				d = x
				break
			}
		}
		var doc metadataDoc
		if d != nil {
			doc = s.metadata(d)
		}
		s.mu.Unlock()
		if d == nil {
			s.log.Error("metadata request from an address that is no droplet", "remote", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "not a droplet of this local DigitalOcean", http.StatusNotFound)
			return
		}
		s.log.Debug("metadata", "droplet", d.ID, "path", r.URL.Path)
		p := r.URL.Path
		switch {
		case p == "/metadata/v1.json":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc.json)
			return
		case p == "/metadata/v1" || p == "/metadata/v1/" || strings.HasPrefix(p, "/metadata/v1/"):
			rest := strings.Trim(strings.TrimPrefix(p, "/metadata/v1"), "/")
			text, ok := walk(doc.tree, rest)
			if !ok {
				http.Error(w, "not found", http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, text)
			return
		}
		http.Error(w, "not found", http.StatusNotFound)
	})
}

type metadataDoc struct {
	json map[string]any
	tree map[string]any // the /metadata/v1/ paths
}

// metadata builds a droplet's metadata document; the caller holds s.mu.
func (s *Server) metadata(d *droplet) metadataDoc {
	pubMask, pubGW := addrInfo(s.cfg.Networks.Public)
	privMask, privGW := addrInfo(s.cfg.Networks.Private)
	keys := d.PublicKeys
	if keys == nil {
		keys = []string{}
	}
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	var userData any
	if d.UserData != "" {
		userData = d.UserData
	}
	iface := func(ip, mask, gw, mac, typ string) map[string]any {
		return map[string]any{"ipv4": map[string]any{"ip_address": ip, "netmask": mask, "gateway": gw}, "mac": mac, "type": typ}
	}
	nameservers := []string{"67.207.67.2", "67.207.67.3"}
	js := map[string]any{
		"droplet_id": d.ID, "hostname": d.Name, "user_data": userData, "vendor_data": "",
		"public_keys": keys, "auth_key": "", "region": d.Region,
		"interfaces": map[string]any{
			"public":  []any{iface(d.PublicIP, pubMask, pubGW, d.PublicMAC, "public")},
			"private": []any{iface(d.PrivateIP, privMask, privGW, d.PrivateMAC, "private")},
		},
		"floating_ip": map[string]any{"ipv4": map[string]any{"active": false}},
		"reserved_ip": map[string]any{"ipv4": map[string]any{"active": false}},
		"dns":         map[string]any{"nameservers": nameservers},
		"tags":        tags,
		"features":    map[string]any{"dhcp_enabled": false},
	}
	treeIface := func(ip, mask, gw, mac, typ string) map[string]any {
		return map[string]any{"mac": mac, "type": typ,
			"ipv4": map[string]any{"address": ip, "netmask": mask, "gateway": gw}}
	}
	tree := map[string]any{
		"id": strconv.Itoa(d.ID), "hostname": d.Name, "user-data": d.UserData, "vendor-data": "",
		"public-keys": strings.Join(keys, "\n"), "region": d.Region,
		"interfaces": map[string]any{
			"public":  []any{treeIface(d.PublicIP, pubMask, pubGW, d.PublicMAC, "public")},
			"private": []any{treeIface(d.PrivateIP, privMask, privGW, d.PrivateMAC, "private")},
		},
		"floating_ip": map[string]any{"ipv4": map[string]any{"active": "false"}},
		"reserved_ip": map[string]any{"ipv4": map[string]any{"active": "false"}},
		"dns":         map[string]any{"nameservers": strings.Join(nameservers, "\n")},
		"tags":        tags,
		"features":    map[string]any{"dhcp_enabled": "false"},
	}
	return metadataDoc{json: js, tree: tree}
}

// walk follows a /metadata/v1/ path: a leaf is its text, a folder lists its entries
// (sub-folders with a trailing slash), a list of strings is one per line.
func walk(node any, path string) (string, bool) {
	if path != "" {
		head, rest, _ := strings.Cut(path, "/")
		switch n := node.(type) {
		case map[string]any:
			child, ok := n[head]
			if !ok {
				return "", false
			}
			return walk(child, rest)
		case []any:
			i, err := strconv.Atoi(head)
			if err != nil || i < 0 || i >= len(n) {
				return "", false
			}
			return walk(n[i], rest)
		default:
			return "", false
		}
	}
	switch n := node.(type) {
	case string:
		return n, true
	case []string:
		return strings.Join(n, "\n"), true
	case []any:
		var lines []string
		for i := range n {
			lines = append(lines, strconv.Itoa(i)+"/")
		}
		return strings.Join(lines, "\n"), true
	case map[string]any:
		var lines []string
		for k, v := range n {
			switch v.(type) {
			case map[string]any, []any, []string:
				lines = append(lines, k+"/")
			default:
				lines = append(lines, k)
			}
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n"), true
	}
	return "", false
}
