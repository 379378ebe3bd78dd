package localdo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"github.com/codelab-app/infra/e2e/internal/droplets"
	"github.com/digitalocean/godo"
)

// dropletJSON is a droplet in the API's shape; the caller holds s.mu.
func (s *Server) dropletJSON(d *droplet) *godo.Droplet {
	z, _ := findSize(d.Size)
	v4 := []godo.NetworkV4{}
	if d.PublicIP != "" {
		mask, gw := addrInfo(s.cfg.Networks.Public)
		v4 = append(v4, godo.NetworkV4{IPAddress: d.PublicIP, Netmask: mask, Gateway: gw, Type: "public"})
	}
	if d.PrivateIP != "" {
		mask, gw := addrInfo(s.cfg.Networks.Private)
		v4 = append(v4, godo.NetworkV4{IPAddress: d.PrivateIP, Netmask: mask, Gateway: gw, Type: "private"})
	}
	var img *godo.Image
	if im := s.imageByID(d.ImageID); im != nil {
		img = s.imageJSON(im)
	} else {
		// The snapshot it was made from is gone; the API still describes the droplet's
		// image by the id it had.
		img = &godo.Image{ID: d.ImageID, Name: "deleted image", Type: "snapshot", Status: "deleted", Regions: []string{}, Tags: []string{}}
	}
	features := []string{"private_networking"}
	if d.Monitoring {
		features = append(features, "monitoring")
	}
	return &godo.Droplet{
		ID: d.ID, Name: d.Name, Memory: z.memory, Vcpus: z.vcpus, Disk: z.disk,
		Locked: d.Locked, Status: d.Status, Created: d.Created.UTC().Format(time.RFC3339),
		Features: features, BackupIDs: []int{}, SnapshotIDs: append([]int{}, d.SnapshotIDs...),
		Image: img, VolumeIDs: []string{}, Size: sizeJSON(d.Size), SizeSlug: d.Size,
		Networks: &godo.Networks{V4: v4, V6: []godo.NetworkV6{}},
		Region:   regionJSON(d.Region), Tags: append([]string{}, d.Tags...), VPCUUID: vpcUUID,
		// Kernel and NextBackupWindow stay nil: the API sends null for droplets with
		// internally managed kernels and without backups.
	}
}

func (s *Server) listDroplets(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "tag_name", "name"); err != nil {
		return err
	}
	tag, name := r.URL.Query().Get("tag_name"), r.URL.Query().Get("name")
	s.mu.Lock()
	var out []*godo.Droplet
	for _, id := range sortedKeys(s.st.Droplets) {
		d := s.st.Droplets[id]
		if (tag != "" && !hasTag(d.Tags, tag)) || (name != "" && d.Name != name) {
			continue
		}
		out = append(out, s.dropletJSON(d))
	}
	s.mu.Unlock()
	return writePage(s, w, r, "droplets", out)
}

func (s *Server) getDroplet(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.st.Droplets[id]
	if d == nil {
		return notFound()
	}
	writeOne(w, http.StatusOK, "droplet", s.dropletJSON(d))
	return nil
}

// createReq is every field godo (Packer's v1.11 and the imager's current one) can send.
type createReq struct {
	Name              string            `json:"name"`
	Names             []string          `json:"names"`
	Region            string            `json:"region"`
	Size              string            `json:"size"`
	Image             json.RawMessage   `json:"image"`
	SSHKeys           []json.RawMessage `json:"ssh_keys"`
	Backups           bool              `json:"backups"`
	IPv6              bool              `json:"ipv6"`
	PrivateNetworking bool              `json:"private_networking"`
	Monitoring        bool              `json:"monitoring"`
	UserData          string            `json:"user_data"`
	Volumes           []json.RawMessage `json:"volumes"`
	Tags              []string          `json:"tags"`
	VPCUUID           string            `json:"vpc_uuid"`
	SubnetUUID        string            `json:"subnet_uuid"`
	WithDropletAgent  *bool             `json:"with_droplet_agent"`
	BackupPolicy      json.RawMessage   `json:"backup_policy"`
	PublicNetworking  *bool             `json:"public_networking"`
	GPUPartitionMode  string            `json:"gpu_partition_mode"`
}

var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,253}[a-zA-Z0-9])?$`)

// unsupported reports the first request field the local DigitalOcean cannot honour.
func (c *createReq) unsupported() string {
	switch {
	case len(c.Names) > 0:
		return "names (creating several droplets at once)"
	case c.Backups:
		return "backups"
	case c.IPv6:
		return "ipv6"
	case len(c.Volumes) > 0:
		return "volumes"
	case c.VPCUUID != "" && c.VPCUUID != vpcUUID:
		return "vpc_uuid other than " + vpcUUID
	case c.SubnetUUID != "":
		return "subnet_uuid"
	case len(c.BackupPolicy) > 0 && string(c.BackupPolicy) != "null":
		return "backup_policy"
	case c.PublicNetworking != nil && !*c.PublicNetworking:
		return "public_networking=false"
	case c.GPUPartitionMode != "":
		return "gpu_partition_mode"
	}
	return ""
}

func (s *Server) createDroplet(w http.ResponseWriter, r *http.Request) error {
	var req createReq
	if err := decode(r, &req); err != nil {
		return err
	}
	if what := req.unsupported(); what != "" {
		s.log.Error("UNIMPLEMENTED droplet create option", "option", what)
		return unprocessable("The local DigitalOcean does not implement %s.", what)
	}
	if !hostnameRE.MatchString(req.Name) {
		return unprocessable("Name Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)")
	}
	if _, ok := findRegion(req.Region); !ok {
		return unprocessable("Region is not available")
	}
	if _, ok := findSize(req.Size); !ok {
		return unprocessable("Size is not available")
	}
	if len(req.UserData) > 64*1024 {
		return unprocessable("user_data is larger than 64 KiB")
	}
	for _, t := range req.Tags {
		if !tagRE.MatchString(t) {
			return unprocessable("tag %q: tags may contain letters, numbers, colons, dashes, and underscores", t)
		}
	}

	s.mu.Lock()
	im, err := s.resolveImage(req.Image)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	var pubKeys []string
	for _, raw := range req.SSHKeys {
		var ref string
		var n int
		if json.Unmarshal(raw, &n) == nil {
			ref = strconv.Itoa(n)
		} else if json.Unmarshal(raw, &ref) != nil {
			s.mu.Unlock()
			return unprocessable("ssh_keys must be ids or fingerprints")
		}
		k := s.findKey(ref)
		if k == nil {
			s.mu.Unlock()
			return unprocessable("ssh_keys: no SSH key %s on the account", ref)
		}
		pubKeys = append(pubKeys, k.PublicKey)
	}
	pubIP, privIP, err := s.allocateAddrs()
	if err != nil {
		s.mu.Unlock()
		return serverError(err)
	}
	d := &droplet{
		ID: s.st.id(), Name: req.Name, Region: req.Region, Size: req.Size, ImageID: im.ID,
		Status: "new", Locked: true, Created: s.cfg.Now(), Tags: append([]string{}, req.Tags...),
		UserData: req.UserData, PublicKeys: pubKeys, PublicIP: pubIP.String(), PrivateIP: privIP.String(),
		Monitoring: req.Monitoring, SnapshotIDs: []int{},
	}
	var same []int
	for _, id := range sortedKeys(s.st.Droplets) {
		if s.st.Droplets[id].Name == d.Name {
			same = append(same, id)
		}
	}
	if len(same) > 0 {
		// DigitalOcean does not stop a second droplet with the same name, so neither do
		// we; but a client that retried a create after a timeout now pays for two.
		s.log.Warn("DUPLICATE droplet name: creating a second droplet with the name of an existing one (a retried create?)",
			"name", d.Name, "existing", same, "new", d.ID)
	}
	s.st.Droplets[d.ID] = d
	s.addTags(d.Tags)
	// The create action, as DigitalOcean records it: the response links to it and
	// clients (doctl --wait, godo/util.WaitForActive) poll it.
	act := &action{ID: s.st.id(), Status: "in-progress", Type: "create", StartedAt: s.cfg.Now(),
		ResourceID: d.ID, ResourceType: "droplet", Region: d.Region}
	s.st.Actions[act.ID] = act
	ref := im.Ref
	err = s.st.save(s.cfg.StateDir)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	failed := func(msg string) {
		delete(s.st.Droplets, d.ID)
		t := s.cfg.Now()
		act.Status, act.Error, act.CompletedAt = "errored", msg, &t
		_ = s.st.save(s.cfg.StateDir)
	}

	if _, err := s.cfg.Runtime.Image(r.Context(), ref); err != nil {
		s.mu.Lock()
		failed(err.Error())
		s.mu.Unlock()
		if errors.Is(err, droplets.ErrNoImage) {
			return unprocessable("The image's Docker image %s does not exist (make deps builds the base image).", ref)
		}
		return serverError(err)
	}
	inst, err := s.boot(r, d.ID, req.Name, ref, pubIP, privIP, pubKeys)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		failed(err.Error())
		if rerr := s.cfg.Runtime.Remove(r.Context(), d.ID); rerr != nil {
			s.log.Error("remove half-created droplet", "droplet", d.ID, "error", rerr)
		}
		return serverError(fmt.Errorf("create droplet %s: %w", req.Name, err))
	}
	d.Instance, d.Status, d.Locked = inst, "active", false
	done := s.cfg.Now()
	act.Status, act.CompletedAt = "completed", &done
	if err := s.st.save(s.cfg.StateDir); err != nil {
		return err
	}
	s.log.Info("droplet active", "droplet", d.ID, "name", d.Name, "image", ref, "public_ip", d.PublicIP, "private_ip", d.PrivateIP, "action", act.ID)
	writeJSON(w, http.StatusAccepted, map[string]any{
		"droplet": wire(s.dropletJSON(d)),
		"links": godo.Links{Actions: []godo.LinkAction{{
			ID: act.ID, Rel: "create", HREF: fmt.Sprintf("http://%s/v2/actions/%d", r.Host, act.ID),
		}}},
	})
	return nil
}

// boot creates and starts the container, doing what cloud-init does on DigitalOcean:
// fresh SSH host keys and the account keys in root's authorized_keys; and, for the
// local setup only, the trusted local registry and /etc/codelab/do-api-url (the API
// as droplets reach it, read by the agent's fleet view).
func (s *Server) boot(r *http.Request, id int, name, ref string, pub, priv netip.Addr, keys []string) (droplets.Instance, error) {
	files, err := droplets.HostKeys()
	if err != nil {
		return droplets.Instance{}, err
	}
	if len(keys) > 0 {
		var ak []byte
		for _, k := range keys {
			ak = append(ak, []byte(k+"\n")...)
		}
		files = append(files, droplets.File{Path: "/root/.ssh/authorized_keys", Mode: 0o600, Data: ak})
	}
	if len(s.cfg.InsecureRegistries) > 0 {
		b, _ := json.Marshal(map[string]any{"insecure-registries": s.cfg.InsecureRegistries})
		files = append(files, droplets.File{Path: "/etc/docker/daemon.json", Mode: 0o644, Data: append(b, '\n')})
	}
	if s.cfg.MetadataTarget != "" {
		// The API as the droplet reaches it (the metadata listener serves
		// /v2/ too): the agent's fleet view reads it instead of the real
		// DigitalOcean's, which a test must never reach.
		files = append(files, droplets.File{Path: "/etc/codelab/do-api-url", Mode: 0o644, Data: []byte("http://" + s.cfg.MetadataTarget + "/\n")})
	}
	spec := droplets.Spec{DropletID: id, Hostname: name, Image: ref, PublicIP: pub, PrivateIP: priv, Files: files}
	inst, err := s.cfg.Runtime.Create(r.Context(), spec, s.cfg.Networks)
	if err != nil {
		return inst, err
	}
	if inst.DockerData.Bytes > 0 {
		s.log.Info("droplet starts with the snapshot's Docker data", "droplet", id, "image", ref,
			"docker_data_bytes", inst.DockerData.Bytes, "docker_data_copy", inst.DockerData.Duration.Round(time.Millisecond))
	}
	return inst, s.cfg.Runtime.Start(r.Context(), id, s.cfg.MetadataTarget)
}

// allocateAddrs picks the lowest free address (from .10) in each network; the caller
// holds s.mu.
func (s *Server) allocateAddrs() (pub, priv netip.Addr, err error) {
	used := map[netip.Addr]bool{}
	for _, d := range s.st.Droplets {
		for _, a := range []string{d.PublicIP, d.PrivateIP} {
			if ip, err := netip.ParseAddr(a); err == nil {
				used[ip] = true
			}
		}
	}
	pick := func(n droplets.Network) (netip.Addr, error) {
		if !n.Subnet.IsValid() {
			return netip.Addr{}, fmt.Errorf("network %q has no subnet", n.Name)
		}
		a := n.Subnet.Masked().Addr()
		for i := 0; i < 10; i++ {
			a = a.Next()
		}
		for ; n.Subnet.Contains(a); a = a.Next() {
			if !used[a] && a != n.Gateway && n.Subnet.Contains(a.Next()) { // not the broadcast
				return a, nil
			}
		}
		return netip.Addr{}, fmt.Errorf("network %s (%s) is full", n.Name, n.Subnet)
	}
	if pub, err = pick(s.cfg.Networks.Public); err != nil {
		return
	}
	priv, err = pick(s.cfg.Networks.Private)
	return
}

// resolveImage finds the image of a create request (slug or id); the caller holds s.mu.
func (s *Server) resolveImage(raw json.RawMessage) (*image, error) {
	var id int
	var slug string
	if json.Unmarshal(raw, &id) == nil {
		if im := s.imageByID(id); im != nil {
			return im, nil
		}
		return nil, unprocessable("You specified an invalid image for Droplet creation.")
	}
	if json.Unmarshal(raw, &slug) != nil || slug == "" {
		return nil, unprocessable("image is required (a slug or an id)")
	}
	for _, b := range s.cfg.BaseImages {
		if b.Slug == slug {
			return s.imageByID(b.ID), nil
		}
	}
	if n, err := strconv.Atoi(slug); err == nil {
		if im := s.imageByID(n); im != nil {
			return im, nil
		}
	}
	return nil, unprocessable("You specified an invalid image for Droplet creation.")
}

func (s *Server) deleteDroplet(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	s.mu.Lock()
	d := s.st.Droplets[id]
	if d == nil {
		s.mu.Unlock()
		return notFound()
	}
	delete(s.st.Droplets, id)
	err = s.st.save(s.cfg.StateDir)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.cfg.Runtime.Remove(r.Context(), id); err != nil {
		return serverError(err)
	}
	s.log.Info("droplet deleted", "droplet", id, "name", d.Name)
	return noContent(w)
}

func (s *Server) deleteDropletsByTag(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r, "tag_name"); err != nil {
		return err
	}
	tag := r.URL.Query().Get("tag_name")
	if tag == "" {
		return unprocessable("tag_name is required")
	}
	s.mu.Lock()
	var ids []int
	for id, d := range s.st.Droplets {
		if hasTag(d.Tags, tag) {
			ids = append(ids, id)
			delete(s.st.Droplets, id)
		}
	}
	err := s.st.save(s.cfg.StateDir)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, s.cfg.Runtime.Remove(r.Context(), id))
	}
	if err := errors.Join(errs...); err != nil {
		return serverError(err)
	}
	return noContent(w)
}

func (s *Server) listDropletSnapshots(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	s.mu.Lock()
	d := s.st.Droplets[id]
	if d == nil {
		s.mu.Unlock()
		return notFound()
	}
	var out []*godo.Image
	for _, sid := range d.SnapshotIDs {
		if im := s.st.Images[sid]; im != nil {
			out = append(out, s.imageJSON(im))
		}
	}
	s.mu.Unlock()
	return writePage(s, w, r, "snapshots", out)
}
