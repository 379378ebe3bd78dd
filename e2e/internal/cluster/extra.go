package cluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/digitalocean/godo"
)

// Extra is a droplet made on a running cluster, outside Plan (the fault
// tests' droplets): its own name, env and Consul join list.
type Extra struct {
	Spec   NodeSpec
	Env    string   // user_data env= (default the cluster's)
	Join   []string // Consul addresses (default the cluster's servers)
	Gossip string   // gossip key (default the cluster's)
	// Bootstrap, for a server, is bootstrap= (default len(Join)).
	Bootstrap int
	// Version is user_data's version= (default the cluster's).
	Version string
	// ImageID, when set, is the snapshot to create the droplet from, instead
	// of the newest of Spec.Image's family.
	ImageID int
}

// Servers returns the private addresses of the cluster's Consul servers.
func (c *Cluster) Servers() []string {
	var out []string
	for _, n := range c.Nodes {
		if n.Consul == "server" {
			out = append(out, n.PrivateIP)
		}
	}
	return out
}

var gossipLine = regexp.MustCompile(`encrypt\s*=\s*"([^"]+)"`)

// Gossip reads the cluster's gossip key from a server's Consul config (the
// demo keeps it nowhere else).
func (c *Cluster) Gossip(ctx context.Context) (string, error) {
	for _, n := range c.Nodes {
		if n.Consul != "server" {
			continue
		}
		out, err := c.Docker.Exec(ctx, n.ID, "cat", "/etc/consul.d/encrypt.hcl")
		if err != nil {
			return "", fmt.Errorf("read the gossip key on %s: %w", n.Name, err)
		}
		if m := gossipLine.FindStringSubmatch(out); m != nil {
			return m[1], nil
		}
		return "", fmt.Errorf("no encrypt = in %s's /etc/consul.d/encrypt.hcl", n.Name)
	}
	return "", errors.New("no Consul server droplet")
}

// CreateExtra makes one more droplet from the newest snapshot of its image
// family, with user_data built like the cluster's own. It does not wait for
// it to be ready.
func (c *Cluster) CreateExtra(ctx context.Context, x Extra) (*Node, error) {
	var im godo.Image
	if x.ImageID != 0 {
		got, _, err := c.DO.Images.GetByID(ctx, x.ImageID)
		if err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", x.ImageID, err)
		}
		im = *got
	} else {
		snaps, err := c.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		var ok bool
		if im, ok = snaps[x.Spec.Image]; !ok {
			return nil, fmt.Errorf("no %s snapshot", x.Spec.Image)
		}
	}
	var err error
	if x.Join == nil {
		x.Join = c.Servers()
	}
	if x.Gossip == "" {
		if x.Gossip, err = c.Gossip(ctx); err != nil {
			return nil, err
		}
	}
	env := c.Opts.Env
	if x.Env != "" {
		env = x.Env
	}
	line := c.userData(x.Spec, env, x.Join, x.Gossip)
	if x.Version != "" {
		line = strings.Replace(line, " version="+c.Opts.Version+" ", " version="+x.Version+" ", 1)
	}
	if x.Bootstrap > 0 {
		line = regexp.MustCompile(` bootstrap=\d+`).ReplaceAllString(line, fmt.Sprintf(" bootstrap=%d", x.Bootstrap))
	}
	d, _, err := c.DO.Droplets.Create(ctx, &godo.DropletCreateRequest{
		Name: x.Spec.Name, Region: c.Opts.Region, Size: "s-2vcpu-4gb", Image: godo.DropletCreateImage{ID: im.ID},
		UserData: line, Tags: []string{"codelab", "codelab-" + x.Spec.Role, "codelab-e2e-extra"},
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", x.Spec.Name, err)
	}
	n := &Node{NodeSpec: x.Spec, ID: d.ID}
	n.PublicIP, _ = d.PublicIPv4()
	n.PrivateIP, _ = d.PrivateIPv4()
	fmt.Fprintf(c.Opts.Out, "    %s: droplet %d from %s, public %s, private %s\n", x.Spec.Name, d.ID, im.Name, n.PublicIP, n.PrivateIP)
	return n, nil
}

// Delete removes a droplet.
func (c *Cluster) Delete(ctx context.Context, n *Node) error {
	if _, err := c.DO.Droplets.Delete(ctx, n.ID); err != nil {
		return fmt.Errorf("delete %s: %w", n.Name, err)
	}
	return nil
}

// NextPrivateAddrs predicts the next count private addresses the local
// DigitalOcean hands out, for a server that a test creates later but whose
// address clients must be given now.
func (c *Cluster) NextPrivateAddrs(ctx context.Context, count int) ([]string, error) {
	existing, _, err := c.DO.Droplets.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, d := range existing {
		if ip, err := d.PrivateIPv4(); err == nil {
			used[ip] = true
		}
	}
	return freeAddrs(c.Info.Networks.Private, used, count), nil
}
