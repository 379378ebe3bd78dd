// Package firewall keeps the droplet's containers away from the metadata
// service. DigitalOcean's metadata service (169.254.169.254) hands out the
// droplet's user_data, and with it the gossip key, do_token and
// registry_token; containers on Docker's bridge would reach it through
// Docker's NAT, so an SSRF or RCE in an app would yield those secrets.
//
// The rules live in the filter table's DOCKER-USER chain, which Docker
// jumps to from FORWARD before its own rules and documents as the users'
// chain: dockerd creates it when missing, never flushes or edits it (a
// dockerd restart keeps the rules), and puts its own jump back at the top of
// FORWARD on every start. A reboot empties the kernel's tables, so the rules
// are installed on every boot, before dockerd starts (codelab-firewall.service,
// Before= and RequiredBy= docker.service: the containers Docker restarts by
// their restart policy never run without them) and again by the agent's
// boot step before compose up.
//
// Only forwarded traffic passes DOCKER-USER: the host's own requests (the
// agent reads its metadata) go through OUTPUT and are untouched.
package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// MetadataAddr is DigitalOcean's metadata service.
const MetadataAddr = "169.254.169.254"

// Chain is Docker's chain for user rules; FORWARD jumps to it first.
const Chain = "DOCKER-USER"

const (
	table   = "filter"
	forward = "FORWARD"
	comment = "codelab: containers never reach the metadata service"
)

// Family is an IP version.
type Family string

const (
	IPv4 Family = "IPv4"
	IPv6 Family = "IPv6"
)

// Rule is one DOCKER-USER rule and why it is there.
type Rule struct {
	Family Family
	// Dest is the original destination the rule matches (before any DNAT).
	Dest string
	Why  string
}

// Spec is the rule in iptables' words. It matches the connection's
// original destination (conntrack's --ctorigdst), not the packet's: a DNAT
// in PREROUTING (a local metadata stand-in, a proxy) rewrites the
// destination before FORWARD, and the connection is still one to the
// metadata service. REJECT, not DROP: an SDK that probes the metadata
// service fails at once instead of waiting for its timeout.
func (r Rule) Spec() []string {
	reject := "icmp-admin-prohibited"
	if r.Family == IPv6 {
		reject = "icmp6-adm-prohibited"
	}
	return []string{"-m", "conntrack", "--ctorigdst", r.Dest,
		"-m", "comment", "--comment", comment,
		"-j", "REJECT", "--reject-with", reject}
}

// Rules is the rule set. IPv4: the metadata address itself. IPv6: the
// metadata service has no IPv6 address, so the only IPv6 paths to it are
// the forms that embed 169.254.169.254 (a9fe:a9fe) and that something on
// the way could translate back to IPv4:
//   - ::ffff:169.254.169.254, IPv4-mapped: a dual-stack socket sends it as
//     IPv4 (the IPv4 rule covers that), but a raw packet can carry it;
//   - ::169.254.169.254, IPv4-compatible (deprecated, automatic tunnels);
//   - 64:ff9b::169.254.169.254, the NAT64 well-known prefix (RFC 6052): a
//     NAT64 gateway on the path would forward it as IPv4;
//   - 2002:a9fe:a9fe::/48, 6to4 with the metadata address as the relay.
//
// A network-specific NAT64 prefix cannot be known here; DigitalOcean runs
// none.
func Rules() []Rule {
	return []Rule{
		{IPv4, MetadataAddr + "/32", "the metadata service"},
		{IPv6, "::ffff:169.254.169.254/128", "IPv4-mapped form"},
		{IPv6, "::169.254.169.254/128", "IPv4-compatible form"},
		{IPv6, "64:ff9b::a9fe:a9fe/128", "NAT64 well-known prefix (RFC 6052)"},
		{IPv6, "2002:a9fe:a9fe::/48", "6to4 through the metadata address"},
	}
}

// Table is the part of *iptables.IPTables the installer uses: one IP
// version's tables.
type Table interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
}

// Installer installs the rules with one Table per IP version.
type Installer struct {
	IPv4 Table
	// IPv6 is nil when the kernel has no IPv6 (then there is no IPv6 path
	// to close).
	IPv6 Table
}

// Report says what Apply found and did.
type Report struct {
	Families []Family // the IP versions whose rules are in place
	Added    int      // rules (and jumps) inserted by this run
	Present  int      // rules already in place
	// NoIPv6 is set when the kernel has no IPv6.
	NoIPv6 bool
}

// String is the one line status shows for the step.
func (r Report) String() string {
	fams := make([]string, len(r.Families))
	for i, f := range r.Families {
		fams[i] = string(f)
	}
	s := fmt.Sprintf("%s: %s rejected for containers (%s)", Chain, MetadataAddr, strings.Join(fams, ", "))
	if r.NoIPv6 {
		s += "; no IPv6 in this kernel"
	}
	switch r.Added {
	case 0:
	case 1:
		return s + ", 1 rule added"
	default:
		return fmt.Sprintf("%s, %d rules added", s, r.Added)
	}
	return s + ", rules already in place"
}

// Error says which IP version and what Apply was doing when it failed.
type Error struct {
	Family Family
	Doing  string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %s: %v", e.Family, Chain, e.Doing, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Hint is the command that shows the rules and reapplies them.
const Hint = "iptables -S " + Chain + "; ip6tables -S " + Chain + "; codelab-agent firewall"

// Apply makes sure each IP version's DOCKER-USER chain exists, that
// FORWARD jumps to it, and that every rule of Rules is in it, ahead of
// anything else (Docker appends a RETURN on older releases). It adds only
// what is missing, checking each rule with iptables -C, so any number of
// runs leaves one copy of each rule.
func (in Installer) Apply(ctx context.Context) (Report, error) {
	var rep Report
	for _, f := range []struct {
		fam Family
		t   Table
	}{{IPv4, in.IPv4}, {IPv6, in.IPv6}} {
		if f.t == nil {
			if f.fam == IPv4 {
				return rep, &Error{Family: IPv4, Doing: "no iptables", Err: errors.New("no IPv4 table given")}
			}
			rep.NoIPv6 = true
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if err := in.apply(f.fam, f.t, &rep); err != nil {
			return rep, err
		}
		rep.Families = append(rep.Families, f.fam)
	}
	return rep, nil
}

func (in Installer) apply(fam Family, t Table, rep *Report) error {
	ok, err := t.ChainExists(table, Chain)
	if err != nil {
		return &Error{fam, "look for the chain", err}
	}
	if !ok {
		if err := t.NewChain(table, Chain); err != nil {
			// dockerd may have created it meanwhile.
			if again, aerr := t.ChainExists(table, Chain); aerr != nil || !again {
				return &Error{fam, "create the chain", err}
			}
		}
	}
	// Docker inserts this very jump at the top of FORWARD when it starts
	// (deleting an identical one first), so a jump added here before
	// dockerd runs, or for IPv6 where Docker manages no ip6tables, is
	// never doubled.
	jump := []string{"-j", Chain}
	if ok, err := t.Exists(table, forward, jump...); err != nil {
		return &Error{fam, "check the FORWARD jump", err}
	} else if !ok {
		if err := t.Insert(table, forward, 1, jump...); err != nil {
			return &Error{fam, "add the FORWARD jump", err}
		}
		rep.Added++
	}
	for _, r := range Rules() {
		if r.Family != fam {
			continue
		}
		ok, err := t.Exists(table, Chain, r.Spec()...)
		if err != nil {
			return &Error{fam, "check the rule for " + r.Dest, err}
		}
		if ok {
			rep.Present++
			continue
		}
		if err := t.Insert(table, Chain, 1, r.Spec()...); err != nil {
			return &Error{fam, "add the rule for " + r.Dest, err}
		}
		rep.Added++
	}
	return nil
}

// lockWait is how long iptables waits for the xtables lock, in seconds
// (dockerd holds it while it sets up its chains).
const lockWait = 30

// System returns the Installer for this machine's iptables and ip6tables
// (the alternatives dockerd uses too). IPv6 is left out when the kernel has
// none (/proc/sys/net/ipv6 is absent).
func System() (Installer, error) {
	v4, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(lockWait))
	if err != nil {
		return Installer{}, &Error{IPv4, "find iptables", err}
	}
	in := Installer{IPv4: v4}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return in, nil
	}
	v6, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv6), iptables.Timeout(lockWait))
	if err != nil {
		return Installer{}, &Error{IPv6, "find ip6tables", err}
	}
	in.IPv6 = v6
	return in, nil
}
