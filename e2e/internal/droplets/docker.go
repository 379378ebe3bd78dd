// Package droplets runs local DigitalOcean droplets as Docker containers: systemd as PID 1,
// sshd, a Docker volume for /var/lib/docker (so Docker runs inside), two networks (public
// and VPC) with fixed addresses, and the metadata address 169.254.169.254 redirected to
// the local DigitalOcean inside the droplet's network namespace.
//
// A snapshot is the droplet's root file system (docker commit) plus a copy of its
// /var/lib/docker volume, as a volume of the snapshot's own: on DigitalOcean a snapshot
// is the whole disk, so the images a build pulled (the service images bake the roles'
// images) are in every droplet created from it. A droplet from a snapshot starts with a
// copy of that volume.
//
// It drives the docker CLI (the one on PATH, or Docker.Bin) rather than the Engine API:
// the CLI is what an operator would type to look at the same containers.
package droplets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Labels put on everything this package creates. LabelInstance tells local DigitalOceans
// apart; `localdo down` removes everything carrying its instance label.
const (
	LabelInstance  = "codelab.localdo.instance"
	LabelKind      = "codelab.localdo.kind"
	LabelDropletID = "codelab.localdo.droplet-id"
	LabelImageID   = "codelab.localdo.image-id"
)

// MetadataAddr is DigitalOcean's link-local metadata address.
const MetadataAddr = "169.254.169.254"

// metaChain is the nat chain in a droplet's namespace that redirects MetadataAddr.
const metaChain = "LOCALDO-METADATA"

// systemdFlags are the flags a systemd container needs on this machine (DEVELOPERS.md).
var systemdFlags = []string{
	"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
	"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
	"--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
	"--tmpfs", "/run", "--tmpfs", "/run/lock",
	// systemd halts cleanly on SIGRTMIN+3: `docker stop` is a graceful shutdown.
	"--stop-signal", "SIGRTMIN+3",
	"-e", "container=docker",
}

// Docker creates droplets with the docker CLI.
type Docker struct {
	// Bin is the docker client; empty means "docker" on PATH.
	Bin string
	// Instance names this local DigitalOcean: it prefixes every name and is the value of
	// LabelInstance.
	Instance string
	// Subnets to use for new networks; zero values pick free /24s in 10.250.0.0/15.
	PublicSubnet, PrivateSubnet netip.Prefix
	Log                         *slog.Logger
}

// Network is one Docker network droplets are attached to.
type Network struct {
	Name    string       `json:"name"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
}

// Networks are the public and the VPC (private) network of a local DigitalOcean.
type Networks struct {
	Public  Network `json:"public"`
	Private Network `json:"private"`
}

// File is written into a droplet before its first start (what cloud-init would do).
type File struct {
	Path string
	Mode int64
	Data []byte
}

// Spec describes a droplet container.
type Spec struct {
	DropletID int
	Hostname  string
	// Image is the Docker image reference (the slug's base image or a snapshot).
	Image               string
	PublicIP, PrivateIP netip.Addr
	Files               []File
}

// Instance is what Create reports about a droplet container.
type Instance struct {
	Container  string `json:"container"`
	PublicMAC  string `json:"publicMac"`
	PrivateMAC string `json:"privateMac"`
	// DockerData is the copy of the snapshot's Docker data the droplet started with
	// (zero for a base image or a snapshot without one).
	DockerData DataCopy `json:"-"`
}

// DataCopy is one copy of a /var/lib/docker volume: bytes and how long it took.
type DataCopy struct {
	Bytes    int64
	Duration time.Duration
}

// ImageInfo describes a Docker image.
type ImageInfo struct {
	Ref     string
	Size    int64
	Created time.Time
	// DockerData is the snapshot's copy of the droplet's /var/lib/docker (Commit only);
	// Size does not include it.
	DockerData DataCopy
}

// ErrNoImage means a Docker image does not exist.
var ErrNoImage = errors.New("no such image")

func (d *Docker) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}

func (d *Docker) bin() string {
	if d.Bin != "" {
		return d.Bin
	}
	return "docker"
}

// run runs the docker client and returns its trimmed stdout; the error carries stderr.
func (d *Docker) run(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return run(ctx, stdin, d.bin(), args...)
}

func run(ctx context.Context, stdin io.Reader, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return strings.TrimSpace(out.String()), fmt.Errorf("%s %s: %s", bin, strings.Join(args[:min(len(args), 2)], " "), msg)
	}
	return strings.TrimSpace(out.String()), nil
}

func (d *Docker) labels(kind string, extra ...string) []string {
	out := []string{"--label", LabelInstance + "=" + d.Instance, "--label", LabelKind + "=" + kind}
	for _, e := range extra {
		out = append(out, "--label", e)
	}
	return out
}

// ContainerName is the container of droplet id.
func (d *Docker) ContainerName(id int) string {
	return fmt.Sprintf("localdo-%s-droplet-%d", d.Instance, id)
}

func (d *Docker) volumeName(id int) string { return d.ContainerName(id) + "-docker" }

// snapshotVolume is the volume holding the Docker data of snapshot ref, or "" when ref
// is not a snapshot of this instance (a base image).
func (d *Docker) snapshotVolume(ref string) string {
	id, ok := strings.CutPrefix(ref, fmt.Sprintf("codelab-localdo/%s:image-", d.Instance))
	if !ok || id == "" {
		return ""
	}
	return fmt.Sprintf("localdo-%s-image-%s-docker", d.Instance, id)
}

// copyVolume copies the content of volume from into volume to (which exists) in a
// throwaway container of image (any image with GNU cp and du: the snapshot itself),
// without network. cp -a keeps what the Engine's overlay2 store needs: hard links,
// ownership, the whiteout device nodes and the trusted.overlay.* attributes (hence
// CAP_SYS_ADMIN).
func (d *Docker) copyVolume(ctx context.Context, image, from, to string) (DataCopy, error) {
	start := time.Now()
	args := append([]string{"run", "--rm", "--network", "none", "--cap-add", "SYS_ADMIN",
		"--security-opt", "apparmor=unconfined", "-v", from + ":/from:ro", "-v", to + ":/to"}, d.labels("volume-copy")...)
	args = append(args, "--entrypoint", "/bin/sh", image, "-c", "cp -a /from/. /to/ && du -sb /to | cut -f1")
	out, err := d.run(ctx, nil, args...)
	if err != nil {
		return DataCopy{}, fmt.Errorf("copy Docker data %s to %s: %w", from, to, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return DataCopy{}, fmt.Errorf("copy Docker data %s to %s: size %q: %w", from, to, out, err)
	}
	return DataCopy{Bytes: n, Duration: time.Since(start)}, nil
}

func (d *Docker) volumeExists(ctx context.Context, name string) bool {
	_, err := d.run(ctx, nil, "volume", "inspect", "-f", "{{.Name}}", name)
	return err == nil
}

// SnapshotRef is the Docker image reference of snapshot image id.
func (d *Docker) SnapshotRef(id int) string {
	return fmt.Sprintf("codelab-localdo/%s:image-%d", d.Instance, id)
}

// EnsureNetworks creates the public and the VPC network (or finds them from an earlier
// run) and returns their subnets and gateways.
func (d *Docker) EnsureNetworks(ctx context.Context) (Networks, error) {
	var n Networks
	var err error
	n.Public, err = d.ensureNetwork(ctx, "public", d.PublicSubnet)
	if err != nil {
		return n, err
	}
	n.Private, err = d.ensureNetwork(ctx, "vpc", d.PrivateSubnet)
	return n, err
}

type netInspect struct {
	Name string
	IPAM struct {
		Config []struct {
			Subnet  string
			Gateway string
		}
	}
}

func (d *Docker) inspectNetwork(ctx context.Context, name string) (Network, error) {
	out, err := d.run(ctx, nil, "network", "inspect", name)
	if err != nil {
		return Network{}, err
	}
	var ni []netInspect
	if err := json.Unmarshal([]byte(out), &ni); err != nil || len(ni) != 1 || len(ni[0].IPAM.Config) == 0 {
		return Network{}, fmt.Errorf("inspect network %s: unexpected output %q", name, out)
	}
	c := ni[0].IPAM.Config[0]
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil {
		return Network{}, fmt.Errorf("inspect network %s: subnet: %w", name, err)
	}
	gw, err := netip.ParseAddr(c.Gateway)
	if err != nil {
		return Network{}, fmt.Errorf("inspect network %s: gateway: %w", name, err)
	}
	return Network{Name: name, Subnet: p, Gateway: gw}, nil
}

// usedSubnets lists the subnets of every Docker network on the machine.
func (d *Docker) usedSubnets(ctx context.Context) ([]netip.Prefix, error) {
	ids, err := d.run(ctx, nil, "network", "ls", "-q")
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	if ids == "" {
		return out, nil
	}
	js, err := d.run(ctx, nil, append([]string{"network", "inspect"}, strings.Fields(ids)...)...)
	if err != nil {
		return nil, err
	}
	var ni []netInspect
	if err := json.Unmarshal([]byte(js), &ni); err != nil {
		return nil, fmt.Errorf("inspect networks: %w", err)
	}
	for _, n := range ni {
		for _, c := range n.IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func (d *Docker) ensureNetwork(ctx context.Context, role string, want netip.Prefix) (Network, error) {
	name := fmt.Sprintf("localdo-%s-%s", d.Instance, role)
	if n, err := d.inspectNetwork(ctx, name); err == nil {
		return n, nil
	}
	var candidates []netip.Prefix
	if want.IsValid() {
		candidates = []netip.Prefix{want.Masked()}
	} else {
		base := 250 // public: 10.250.x.0/24, vpc: 10.251.x.0/24
		if role == "vpc" {
			base = 251
		}
		for i := 0; i < 256; i++ {
			candidates = append(candidates, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(base), byte(i), 0}), 24))
		}
	}
	used, err := d.usedSubnets(ctx)
	if err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", name, err)
	}
	var lastErr error
	for _, c := range candidates {
		if overlapsAny(c, used) {
			continue
		}
		gw := c.Addr().Next()
		args := append([]string{"network", "create", "--driver", "bridge",
			"--subnet", c.String(), "--gateway", gw.String()}, d.labels("network")...)
		if _, err := d.run(ctx, nil, append(args, name)...); err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "already exists") {
				return d.inspectNetwork(ctx, name)
			}
			continue // overlaps a network created meanwhile: try the next one
		}
		d.log().Info("created network", "network", name, "subnet", c, "gateway", gw)
		return Network{Name: name, Subnet: c, Gateway: gw}, nil
	}
	if lastErr == nil {
		lastErr = errors.New("every candidate subnet overlaps an existing network")
	}
	return Network{}, fmt.Errorf("create network %s: %w", name, lastErr)
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Overlaps(p) {
			return true
		}
	}
	return false
}

// Create makes the droplet's container (not started): its /var/lib/docker volume, both
// networks with fixed addresses, and spec.Files copied in.
func (d *Docker) Create(ctx context.Context, spec Spec, nets Networks) (Instance, error) {
	name := d.ContainerName(spec.DropletID)
	vol := d.volumeName(spec.DropletID)
	idLabel := LabelDropletID + "=" + strconv.Itoa(spec.DropletID)
	if _, err := d.run(ctx, nil, append(append([]string{"volume", "create"}, d.labels("volume", idLabel)...), vol)...); err != nil {
		return Instance{}, fmt.Errorf("create droplet %d volume: %w", spec.DropletID, err)
	}
	var data DataCopy
	if sv := d.snapshotVolume(spec.Image); sv != "" && d.volumeExists(ctx, sv) {
		var err error
		if data, err = d.copyVolume(ctx, spec.Image, sv, vol); err != nil {
			return Instance{}, fmt.Errorf("droplet %d from %s: %w", spec.DropletID, spec.Image, err)
		}
	}
	args := []string{"create", "--name", name, "--hostname", spec.Hostname,
		"--network", nets.Public.Name, "--ip", spec.PublicIP.String(),
		"-v", vol + ":/var/lib/docker"}
	args = append(args, systemdFlags...)
	args = append(args, d.labels("droplet", idLabel)...)
	args = append(args, spec.Image, "/sbin/init")
	if _, err := d.run(ctx, nil, args...); err != nil {
		return Instance{}, fmt.Errorf("create droplet %d container: %w", spec.DropletID, err)
	}
	if _, err := d.run(ctx, nil, "network", "connect", "--ip", spec.PrivateIP.String(), nets.Private.Name, name); err != nil {
		return Instance{}, fmt.Errorf("connect droplet %d to %s: %w", spec.DropletID, nets.Private.Name, err)
	}
	if len(spec.Files) > 0 {
		tarball, err := tarFiles(spec.Files)
		if err != nil {
			return Instance{}, fmt.Errorf("droplet %d files: %w", spec.DropletID, err)
		}
		if _, err := d.run(ctx, bytes.NewReader(tarball), "cp", "-", name+":/"); err != nil {
			return Instance{}, fmt.Errorf("copy files into droplet %d: %w", spec.DropletID, err)
		}
	}
	inst := Instance{Container: name, DockerData: data}
	out, err := d.run(ctx, nil, "inspect", "-f", "{{json .NetworkSettings.Networks}}", name)
	if err != nil {
		return inst, fmt.Errorf("inspect droplet %d: %w", spec.DropletID, err)
	}
	var eps map[string]struct{ MacAddress string }
	if err := json.Unmarshal([]byte(out), &eps); err != nil {
		return inst, fmt.Errorf("inspect droplet %d networks: %w", spec.DropletID, err)
	}
	inst.PublicMAC = eps[nets.Public.Name].MacAddress
	inst.PrivateMAC = eps[nets.Private.Name].MacAddress
	return inst, nil
}

// Start starts a droplet's container and redirects the metadata address in its network
// namespace to metadataTarget (host:port).
func (d *Docker) Start(ctx context.Context, id int, metadataTarget string) error {
	name := d.ContainerName(id)
	if _, err := d.run(ctx, nil, "start", name); err != nil {
		return fmt.Errorf("start droplet %d: %w", id, err)
	}
	if err := d.RedirectMetadata(ctx, id, metadataTarget); err != nil {
		return err
	}
	// Wait for basic.target (file systems, /tmp cleaned, sysinit done) before the API
	// calls the droplet active, so `docker exec` into a new droplet does not race early
	// boot. Not multi-user.target: units of the image (the agent) may take minutes.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		out, _ := d.run(wctx, nil, "exec", name, "systemctl", "is-active", "basic.target")
		if out == "active" {
			break
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("droplet %d: basic.target not reached within 2m (is %q)", id, out)
		case <-tick.C:
		}
	}
	return nil
}

// RedirectMetadata (re)points 169.254.169.254:80 at target inside the running droplet,
// with the host's iptables in the droplet's network namespace.
func (d *Docker) RedirectMetadata(ctx context.Context, id int, target string) error {
	name := d.ContainerName(id)
	pid, err := d.run(ctx, nil, "inspect", "-f", "{{.State.Pid}}", name)
	if err != nil {
		return fmt.Errorf("droplet %d metadata redirect: %w", id, err)
	}
	if pid == "" || pid == "0" {
		return fmt.Errorf("droplet %d metadata redirect: container is not running", id)
	}
	ipt := func(args ...string) (string, error) {
		return run(ctx, nil, "nsenter", append([]string{"-t", pid, "-n", "iptables", "-w", "-t", "nat"}, args...)...)
	}
	if _, err := ipt("-N", metaChain); err != nil && !strings.Contains(err.Error(), "exists") {
		return fmt.Errorf("droplet %d metadata redirect: %w", id, err)
	}
	if _, err := ipt("-F", metaChain); err != nil {
		return fmt.Errorf("droplet %d metadata redirect: %w", id, err)
	}
	if _, err := ipt("-A", metaChain, "-d", MetadataAddr+"/32", "-p", "tcp", "--dport", "80",
		"-j", "DNAT", "--to-destination", target); err != nil {
		return fmt.Errorf("droplet %d metadata redirect: %w", id, err)
	}
	// OUTPUT catches the droplet's own requests, PREROUTING those of the
	// containers Docker runs inside it: on DigitalOcean both reach the
	// metadata service (containers through Docker's NAT), so both must reach
	// the local one here, never a real 169.254.169.254.
	for _, chain := range []string{"OUTPUT", "PREROUTING"} {
		if _, err := ipt("-C", chain, "-j", metaChain); err != nil {
			if _, err := ipt("-I", chain, "-j", metaChain); err != nil {
				return fmt.Errorf("droplet %d metadata redirect: %w", id, err)
			}
		}
	}
	// Anything else addressed to 169.254.169.254 (another port, UDP) is
	// dropped inside the droplet, in the mangle table (before nat, and
	// out of the way of the droplet's own Docker, which rewrites filter's
	// FORWARD): no packet of a test leaves the machine.
	mangle := func(args ...string) (string, error) {
		return run(ctx, nil, "nsenter", append([]string{"-t", pid, "-n", "iptables", "-w", "-t", "mangle"}, args...)...)
	}
	for _, chain := range []string{"OUTPUT", "PREROUTING"} {
		for _, rule := range [][]string{
			{chain, "-d", MetadataAddr + "/32", "!", "-p", "tcp", "-j", "DROP"},
			{chain, "-d", MetadataAddr + "/32", "-p", "tcp", "!", "--dport", "80", "-j", "DROP"},
		} {
			if _, err := mangle(append([]string{"-C"}, rule...)...); err != nil {
				if _, err := mangle(append([]string{"-A"}, rule...)...); err != nil {
					return fmt.Errorf("droplet %d metadata fence: %w", id, err)
				}
			}
		}
	}
	return nil
}

// Stop stops a droplet: gracefully (systemd halts, up to timeout) or at once (power off).
func (d *Docker) Stop(ctx context.Context, id int, graceful bool, timeout time.Duration) error {
	name := d.ContainerName(id)
	var err error
	if graceful {
		_, err = d.run(ctx, nil, "stop", "-t", strconv.Itoa(int(timeout.Seconds())), name)
	} else {
		running, rerr := d.Running(ctx, id)
		if rerr != nil {
			return fmt.Errorf("power off droplet %d: %w", id, rerr)
		}
		if !running {
			return nil
		}
		_, err = d.run(ctx, nil, "kill", name)
	}
	if err != nil {
		return fmt.Errorf("stop droplet %d: %w", id, err)
	}
	return nil
}

// Running says whether the droplet's container is running.
func (d *Docker) Running(ctx context.Context, id int) (bool, error) {
	out, err := d.run(ctx, nil, "inspect", "-f", "{{.State.Running}}", d.ContainerName(id))
	if err != nil {
		return false, err
	}
	return out == "true", nil
}

// Exists says whether the droplet's container exists.
func (d *Docker) Exists(ctx context.Context, id int) bool {
	_, err := d.run(ctx, nil, "inspect", "-f", "{{.Id}}", d.ContainerName(id))
	return err == nil
}

// Commit snapshots a droplet's root file system as image ref, labelled as snapshot image
// imageID of this instance, and copies its /var/lib/docker volume into the snapshot's
// volume. Packer powers the droplet off first; a snapshot of a running droplet copies
// the Engine's store while it may be writing, as a live snapshot on DigitalOcean may.
func (d *Docker) Commit(ctx context.Context, dropletID, imageID int, ref string) (ImageInfo, error) {
	args := []string{"commit"}
	for _, l := range []string{
		LabelInstance + "=" + d.Instance, LabelKind + "=snapshot",
		LabelImageID + "=" + strconv.Itoa(imageID), LabelDropletID + "=" + strconv.Itoa(dropletID),
	} {
		args = append(args, "--change", "LABEL "+l)
	}
	args = append(args, d.ContainerName(dropletID), ref)
	if _, err := d.run(ctx, nil, args...); err != nil {
		return ImageInfo{}, fmt.Errorf("snapshot droplet %d: %w", dropletID, err)
	}
	sv := d.snapshotVolume(ref)
	if sv == "" {
		return ImageInfo{}, fmt.Errorf("snapshot droplet %d: %s is not a snapshot reference of instance %s", dropletID, ref, d.Instance)
	}
	if _, err := d.run(ctx, nil, append(append([]string{"volume", "create"}, d.labels("snapshot-docker", LabelImageID+"="+strconv.Itoa(imageID))...), sv)...); err != nil {
		return ImageInfo{}, fmt.Errorf("snapshot droplet %d Docker data: %w", dropletID, err)
	}
	data, err := d.copyVolume(ctx, ref, d.volumeName(dropletID), sv)
	if err != nil {
		_, _ = d.run(context.WithoutCancel(ctx), nil, "volume", "rm", "-f", sv)
		_ = d.RemoveImage(context.WithoutCancel(ctx), ref)
		return ImageInfo{}, fmt.Errorf("snapshot droplet %d: %w", dropletID, err)
	}
	info, err := d.Image(ctx, ref)
	info.DockerData = data
	return info, err
}

// Image describes a Docker image; ErrNoImage when it does not exist.
func (d *Docker) Image(ctx context.Context, ref string) (ImageInfo, error) {
	out, err := d.run(ctx, nil, "image", "inspect", "-f", "{{.Size}} {{.Created}}", ref)
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "no such image") {
			return ImageInfo{}, fmt.Errorf("%s: %w", ref, ErrNoImage)
		}
		return ImageInfo{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return ImageInfo{}, fmt.Errorf("inspect image %s: unexpected %q", ref, out)
	}
	size, _ := strconv.ParseInt(f[0], 10, 64)
	created, _ := time.Parse(time.RFC3339Nano, f[1])
	return ImageInfo{Ref: ref, Size: size, Created: created}, nil
}

// RemoveImage untags a snapshot image (Docker frees it once no droplet container uses it)
// and removes its Docker data volume (droplets have their own copies).
func (d *Docker) RemoveImage(ctx context.Context, ref string) error {
	if _, err := d.run(ctx, nil, "image", "rm", "-f", ref); err != nil && !strings.Contains(strings.ToLower(err.Error()), "no such image") {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	if sv := d.snapshotVolume(ref); sv != "" {
		if _, err := d.run(ctx, nil, "volume", "rm", "-f", sv); err != nil {
			return fmt.Errorf("remove image %s Docker data: %w", ref, err)
		}
	}
	return nil
}

// Remove deletes a droplet's container and its /var/lib/docker volume.
func (d *Docker) Remove(ctx context.Context, id int) error {
	if _, err := d.run(ctx, nil, "rm", "-f", "-v", d.ContainerName(id)); err != nil && !strings.Contains(err.Error(), "No such container") {
		return fmt.Errorf("remove droplet %d: %w", id, err)
	}
	if _, err := d.run(ctx, nil, "volume", "rm", "-f", d.volumeName(id)); err != nil {
		return fmt.Errorf("remove droplet %d volume: %w", id, err)
	}
	return nil
}

// Exec runs a command in a running droplet and returns its output.
func (d *Docker) Exec(ctx context.Context, id int, args ...string) (string, error) {
	return d.run(ctx, nil, append([]string{"exec", d.ContainerName(id)}, args...)...)
}

// Down removes every container, volume, network and image labelled with this instance.
// It returns what it removed, by kind.
func (d *Docker) Down(ctx context.Context) (map[string][]string, error) {
	filter := "label=" + LabelInstance + "=" + d.Instance
	removed := map[string][]string{}
	var errs []error
	list := func(args ...string) []string {
		out, err := d.run(ctx, nil, args...)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		return strings.Fields(out)
	}
	if ids := list("ps", "-aq", "--filter", filter); len(ids) > 0 {
		if _, err := d.run(ctx, nil, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
			errs = append(errs, err)
		}
		removed["containers"] = ids
	}
	if vols := list("volume", "ls", "-q", "--filter", filter); len(vols) > 0 {
		if _, err := d.run(ctx, nil, append([]string{"volume", "rm", "-f"}, vols...)...); err != nil {
			errs = append(errs, err)
		}
		removed["volumes"] = vols
	}
	if nets := list("network", "ls", "-q", "--filter", filter); len(nets) > 0 {
		if _, err := d.run(ctx, nil, append([]string{"network", "rm"}, nets...)...); err != nil {
			errs = append(errs, err)
		}
		removed["networks"] = nets
	}
	if imgs := list("image", "ls", "-aq", "--filter", filter); len(imgs) > 0 {
		// A snapshot made from a droplet of another snapshot (a service image on its
		// base) is that image's child, and Docker refuses to remove a parent before its
		// children: remove one by one, newest first (docker image ls's order), and
		// again for what a child still held.
		imgs = uniqInOrder(imgs)
		left := imgs
		for len(left) > 0 {
			var next []string
			var last error
			for _, id := range left {
				if _, err := d.run(ctx, nil, "image", "rm", "-f", id); err != nil && !strings.Contains(strings.ToLower(err.Error()), "no such image") {
					next, last = append(next, id), err
				}
			}
			if len(next) == len(left) {
				errs = append(errs, last)
				break
			}
			left = next
		}
		removed["images"] = imgs
	}
	return removed, errors.Join(errs...)
}

// uniqInOrder drops repeated strings, keeping the first of each in place.
func uniqInOrder(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
