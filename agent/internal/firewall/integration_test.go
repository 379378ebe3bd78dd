package firewall_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codelab-app/infra/agent/internal/firewall"
	"github.com/codelab-app/infra/tools/testenv"
)

// helperEnv makes the test binary act as a helper inside a network
// namespace: "apply" runs the real Installer, "serve" is the metadata
// stand-in.
const helperEnv = "CODELAB_FIREWALL_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "apply":
		in, err := firewall.System()
		if err == nil {
			var rep firewall.Report
			rep, err = in.Apply(context.Background())
			fmt.Println(rep)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "serve":
		err := http.ListenAndServe(":80", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "metadata-stand-in")
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestRulesInNetworkNamespaces runs the real iptables and ip6tables in
// network namespaces this test creates (nothing leaves the machine):
//
//	C (a container) --veth-- H (the droplet: forwards, runs the rules) --veth-- M (169.254.169.254, 64:ff9b::a9fe:a9fe)
//
// Without the rules C reaches the stand-in in M; with them every
// connection from C to the metadata address is refused, over IPv4 and
// through the NAT64 form over IPv6, also when H DNATs the address elsewhere
// (as the local DigitalOcean does), while H itself still reaches it. Three
// runs leave one copy of each rule, ahead of Docker's RETURN; removing the
// IPv4 rule lets C through again and one more run closes it.
func TestRulesInNetworkNamespaces(t *testing.T) {
	testenv.Integration(t, "ip", "iptables", "ip6tables", "curl")
	if os.Geteuid() != 0 {
		t.Fatal("integration prerequisite missing: root (network namespaces and iptables)")
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	nsH, nsC, nsM := "cfw-h-"+id, "cfw-c-"+id, "cfw-m-"+id
	for _, ns := range []string{nsH, nsC, nsM} {
		testenv.Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _, _ = testenv.Output(context.Background(), "ip", "netns", "del", ns) })
		testenv.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	in := func(ns string, args ...string) string {
		t.Helper()
		return testenv.Run(t, "ip", append([]string{"netns", "exec", ns}, args...)...)
	}
	for _, cmd := range [][]string{
		{"link", "add", "vc", "netns", nsC, "type", "veth", "peer", "name", "vh", "netns", nsH},
		{"link", "add", "vm", "netns", nsM, "type", "veth", "peer", "name", "vhm", "netns", nsH},
		{"-n", nsH, "addr", "add", "10.99.0.1/24", "dev", "vh"},
		{"-n", nsH, "-6", "addr", "add", "fd99::1/64", "dev", "vh", "nodad"},
		{"-n", nsH, "addr", "add", "10.98.0.1/24", "dev", "vhm"},
		{"-n", nsH, "-6", "addr", "add", "fd98::1/64", "dev", "vhm", "nodad"},
		{"-n", nsH, "link", "set", "vh", "up"},
		{"-n", nsH, "link", "set", "vhm", "up"},
		{"-n", nsC, "addr", "add", "10.99.0.2/24", "dev", "vc"},
		{"-n", nsC, "-6", "addr", "add", "fd99::2/64", "dev", "vc", "nodad"},
		{"-n", nsC, "link", "set", "vc", "up"},
		{"-n", nsC, "route", "add", "default", "via", "10.99.0.1"},
		{"-n", nsC, "-6", "route", "add", "default", "via", "fd99::1"},
		{"-n", nsM, "addr", "add", "10.98.0.2/24", "dev", "vm"},
		{"-n", nsM, "addr", "add", firewall.MetadataAddr + "/32", "dev", "vm"},
		{"-n", nsM, "-6", "addr", "add", "fd98::2/64", "dev", "vm", "nodad"},
		{"-n", nsM, "-6", "addr", "add", "64:ff9b::a9fe:a9fe/128", "dev", "vm", "nodad"},
		{"-n", nsM, "link", "set", "vm", "up"},
		{"-n", nsM, "route", "add", "default", "via", "10.98.0.1"},
		{"-n", nsM, "-6", "route", "add", "default", "via", "fd98::1"},
		{"-n", nsH, "route", "add", firewall.MetadataAddr + "/32", "via", "10.98.0.2"},
		{"-n", nsH, "-6", "route", "add", "64:ff9b::a9fe:a9fe/128", "via", "fd98::2"},
	} {
		testenv.Run(t, "ip", cmd...)
	}
	in(nsH, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command("ip", "netns", "exec", nsM, self)
	srv.Env = append(os.Environ(), helperEnv+"=serve")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })

	get := func(ns, url string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := testenv.Output(ctx, "ip", "netns", "exec", ns, "curl", "-sS", "-m", "3", url)
		if err == nil && out != "metadata-stand-in" {
			return fmt.Errorf("answered %q", out)
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	const v4URL, v6URL, otherURL = "http://169.254.169.254/", "http://[64:ff9b::a9fe:a9fe]/", "http://10.98.0.2/"
	deadline := time.Now().Add(10 * time.Second)
	for get(nsH, otherURL) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in in %s does not answer: %v", nsM, get(nsH, otherURL))
		}
		time.Sleep(100 * time.Millisecond)
	}
	apply := func() string {
		t.Helper()
		cmd := exec.Command("ip", "netns", "exec", nsH, self)
		cmd.Env = append(os.Environ(), helperEnv+"=apply")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("apply in %s: %v\n%s", nsH, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	mustReach := func(ns, url, why string) {
		t.Helper()
		if err := get(ns, url); err != nil {
			t.Errorf("%s: %s does not answer %s: %v", why, url, ns, err)
		}
	}
	mustNotReach := func(ns, url, why string) {
		t.Helper()
		if err := get(ns, url); err == nil {
			t.Errorf("%s: %s answered %s", why, url, ns)
		}
	}

	// The paths exist: without the rules the "container" gets through.
	mustReach(nsC, v4URL, "no rules yet")
	mustReach(nsC, v6URL, "no rules yet")

	// Docker's chain as dockerd 20.10 leaves it for IPv4: a RETURN and
	// the jump from FORWARD; ip6tables untouched.
	in(nsH, "iptables", "-w", "-N", firewall.Chain)
	in(nsH, "iptables", "-w", "-A", firewall.Chain, "-j", "RETURN")
	in(nsH, "iptables", "-w", "-I", "FORWARD", "-j", firewall.Chain)

	first := apply()
	if first != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), 6 rules added" {
		t.Errorf("first run: %q", first)
	}
	apply()
	if third := apply(); third != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), rules already in place" {
		t.Errorf("third run: %q", third)
	}
	v4Rules := in(nsH, "iptables", "-w", "-S", firewall.Chain)
	v6Rules := in(nsH, "ip6tables", "-w", "-S", firewall.Chain)
	t.Logf("after three runs:\n%s\n%s", v4Rules, v6Rules)
	if n := strings.Count(v4Rules, "--ctorigdst"); n != 1 {
		t.Errorf("IPv4 %s holds %d metadata rules, want 1:\n%s", firewall.Chain, n, v4Rules)
	}
	if n := strings.Count(v6Rules, "--ctorigdst"); n != 4 {
		t.Errorf("IPv6 %s holds %d metadata rules, want 4:\n%s", firewall.Chain, n, v6Rules)
	}
	if i, j := strings.Index(v4Rules, "--ctorigdst"), strings.Index(v4Rules, "-j RETURN"); i < 0 || j < i {
		t.Errorf("the rule is not ahead of Docker's RETURN:\n%s", v4Rules)
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		if fwd := in(nsH, fam, "-w", "-S", "FORWARD"); strings.Count(fwd, "-j "+firewall.Chain) != 1 {
			t.Errorf("%s FORWARD does not jump to %s exactly once:\n%s", fam, firewall.Chain, fwd)
		}
	}

	mustNotReach(nsC, v4URL, "rules in place")
	mustNotReach(nsC, v6URL, "rules in place")
	mustReach(nsH, v4URL, "the host itself")
	mustReach(nsC, otherURL, "other forwarded traffic")

	// The local DigitalOcean's kind of DNAT: the address is rewritten
	// before FORWARD; the original destination still matches.
	in(nsH, "iptables", "-w", "-t", "nat", "-I", "PREROUTING", "-d", firewall.MetadataAddr+"/32", "-p", "tcp", "--dport", "80",
		"-j", "DNAT", "--to-destination", "10.98.0.2:80")
	mustNotReach(nsC, v4URL, "rules in place, address DNATed")

	// The rule, not an accident, is what blocks it.
	v4 := firewall.Rules()[0]
	in(nsH, append([]string{"iptables", "-w", "-D", firewall.Chain}, v4.Spec()...)...)
	mustReach(nsC, v4URL, "IPv4 rule removed")
	if again := apply(); again != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), 1 rule added" {
		t.Errorf("run after the removal: %q", again)
	}
	mustNotReach(nsC, v4URL, "rule applied again")
}
