package firewall

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// fakeTable is one IP version's filter table: chains of rules, each rule
// its spec joined by spaces, in order.
type fakeTable struct {
	chains map[string][]string
	// failOn makes the operation ("new", "exists", "insert") fail.
	failOn string
	// raceCreate makes NewChain fail as if dockerd had created the chain
	// a moment earlier.
	raceCreate bool
}

func newFake() *fakeTable {
	return &fakeTable{chains: map[string][]string{"FORWARD": {"-j DOCKER-FORWARD"}}}
}

var errBoom = errors.New("boom")

func (f *fakeTable) key(table, chain string) string {
	if table != "filter" {
		panic("unexpected table " + table)
	}
	return chain
}

func (f *fakeTable) ChainExists(table, chain string) (bool, error) {
	_, ok := f.chains[f.key(table, chain)]
	return ok, nil
}

func (f *fakeTable) NewChain(table, chain string) error {
	if f.failOn == "new" {
		return errBoom
	}
	if f.raceCreate {
		f.chains[f.key(table, chain)] = []string{"-j RETURN"}
		return errors.New("iptables: Chain already exists")
	}
	f.chains[f.key(table, chain)] = nil
	return nil
}

func (f *fakeTable) Exists(table, chain string, spec ...string) (bool, error) {
	if f.failOn == "exists" {
		return false, errBoom
	}
	c, ok := f.chains[f.key(table, chain)]
	if !ok {
		return false, errors.New("no chain")
	}
	return slices.Contains(c, strings.Join(spec, " ")), nil
}

func (f *fakeTable) Insert(table, chain string, pos int, spec ...string) error {
	if f.failOn == "insert" {
		return errBoom
	}
	k := f.key(table, chain)
	c, ok := f.chains[k]
	if !ok {
		return errors.New("no chain")
	}
	f.chains[k] = slices.Insert(c, pos-1, strings.Join(spec, " "))
	return nil
}

func TestRulesCoverTheMetadataAddressInEveryForm(t *testing.T) {
	var v4, v6 []string
	for _, r := range Rules() {
		spec := strings.Join(r.Spec(), " ")
		switch r.Family {
		case IPv4:
			v4 = append(v4, r.Dest)
			if !strings.Contains(spec, "--reject-with icmp-admin-prohibited") {
				t.Errorf("IPv4 rule %s: %s", r.Dest, spec)
			}
		case IPv6:
			v6 = append(v6, r.Dest)
			if !strings.Contains(spec, "--reject-with icmp6-adm-prohibited") {
				t.Errorf("IPv6 rule %s: %s", r.Dest, spec)
			}
		default:
			t.Errorf("rule %s has family %q", r.Dest, r.Family)
		}
		// The original destination, so a DNAT before FORWARD does not
		// slip past.
		if !strings.HasPrefix(spec, "-m conntrack --ctorigdst "+r.Dest+" ") || !strings.HasSuffix(spec, "-j REJECT --reject-with "+r.Spec()[len(r.Spec())-1]) {
			t.Errorf("rule %s: %s", r.Dest, spec)
		}
		if r.Why == "" {
			t.Errorf("rule %s says not why it is there", r.Dest)
		}
	}
	if !slices.Equal(v4, []string{"169.254.169.254/32"}) {
		t.Errorf("IPv4 destinations = %v", v4)
	}
	want6 := []string{"::ffff:169.254.169.254/128", "::169.254.169.254/128", "64:ff9b::a9fe:a9fe/128", "2002:a9fe:a9fe::/48"}
	if !slices.Equal(v6, want6) {
		t.Errorf("IPv6 destinations = %v, want %v", v6, want6)
	}
}

func TestApplyInstallsOnceAndAheadOfDockersReturn(t *testing.T) {
	v4, v6 := newFake(), newFake()
	// Docker 20.10 made the IPv4 chain with a RETURN and the jump;
	// ip6tables has neither (Docker manages IPv6 only when told to).
	v4.chains["DOCKER-USER"] = []string{"-j RETURN"}
	v4.chains["FORWARD"] = []string{"-j DOCKER-USER", "-j DOCKER-ISOLATION-STAGE-1"}
	in := Installer{IPv4: v4, IPv6: v6}
	rep, err := in.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 1 IPv4 rule; 4 IPv6 rules + the IPv6 FORWARD jump.
	if rep.Added != 6 || rep.Present != 0 || !slices.Equal(rep.Families, []Family{IPv4, IPv6}) {
		t.Fatalf("first run: %+v", rep)
	}
	if got := rep.String(); got != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), 6 rules added" {
		t.Errorf("detail = %q", got)
	}
	if c := v4.chains["DOCKER-USER"]; len(c) != 2 || c[1] != "-j RETURN" || !strings.Contains(c[0], "--ctorigdst 169.254.169.254/32") {
		t.Errorf("IPv4 DOCKER-USER = %q, want the rule ahead of RETURN", c)
	}
	if c := v6.chains["FORWARD"]; len(c) != 2 || c[0] != "-j DOCKER-USER" {
		t.Errorf("IPv6 FORWARD = %q, want the jump first", c)
	}
	if c := v6.chains["DOCKER-USER"]; len(c) != 4 {
		t.Errorf("IPv6 DOCKER-USER = %q", c)
	}
	before4 := slices.Clone(v4.chains["DOCKER-USER"])
	before6 := slices.Clone(v6.chains["DOCKER-USER"])
	for i := 0; i < 3; i++ {
		rep, err = in.Apply(context.Background())
		if err != nil {
			t.Fatal(err)
		}
	}
	if rep.Added != 0 || rep.Present != 5 {
		t.Errorf("fourth run: %+v, want nothing added", rep)
	}
	if got := rep.String(); got != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), rules already in place" {
		t.Errorf("detail = %q", got)
	}
	if !slices.Equal(v4.chains["DOCKER-USER"], before4) || !slices.Equal(v6.chains["DOCKER-USER"], before6) || len(v4.chains["FORWARD"]) != 2 || len(v6.chains["FORWARD"]) != 2 {
		t.Errorf("later runs changed the chains: %q %q", v4.chains, v6.chains)
	}
}

func TestApplyWithoutIPv6(t *testing.T) {
	v4 := newFake()
	rep, err := Installer{IPv4: v4}.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.NoIPv6 || !slices.Equal(rep.Families, []Family{IPv4}) || rep.Added != 2 {
		t.Fatalf("%+v", rep)
	}
	if got := rep.String(); !strings.Contains(got, "(IPv4); no IPv6 in this kernel") {
		t.Errorf("detail = %q", got)
	}
	if _, err := (Installer{}).Apply(context.Background()); err == nil {
		t.Error("no IPv4 table: no error")
	}
}

func TestApplyChainCreatedMeanwhile(t *testing.T) {
	v4 := newFake()
	v4.raceCreate = true
	if _, err := (Installer{IPv4: v4}).Apply(context.Background()); err != nil {
		t.Fatalf("dockerd creating the chain first is not an error: %v", err)
	}
	if c := v4.chains["DOCKER-USER"]; len(c) != 2 || c[1] != "-j RETURN" {
		t.Errorf("DOCKER-USER = %q", c)
	}
}

func TestApplyErrorsNameFamilyAndStep(t *testing.T) {
	for _, tc := range []struct {
		failOn string
		fam    Family
		want   string
	}{
		{"new", IPv4, "IPv4 DOCKER-USER: create the chain: boom"},
		{"exists", IPv6, "IPv6 DOCKER-USER: check the FORWARD jump: boom"},
		{"insert", IPv6, "IPv6 DOCKER-USER: add the FORWARD jump: boom"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			v4, v6 := newFake(), newFake()
			if tc.fam == IPv4 {
				v4.failOn = tc.failOn
			} else {
				v6.failOn = tc.failOn
			}
			_, err := Installer{IPv4: v4, IPv6: v6}.Apply(context.Background())
			var fe *Error
			if !errors.As(err, &fe) || fe.Family != tc.fam || !errors.Is(err, errBoom) || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// A rule that cannot be inserted names its destination.
	v4 := newFake()
	v4.chains["DOCKER-USER"] = nil
	v4.chains["FORWARD"] = []string{"-j DOCKER-USER"}
	v4.failOn = "insert"
	_, err := Installer{IPv4: v4}.Apply(context.Background())
	if err == nil || err.Error() != "IPv4 DOCKER-USER: add the rule for 169.254.169.254/32: boom" {
		t.Fatalf("err = %v", err)
	}
}

func TestApplyStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Installer{IPv4: newFake()}).Apply(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}
