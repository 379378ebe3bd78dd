package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/codelab-app/infra/agent/internal/firewall"
)

func TestFirewallPrintsWhatIsInPlace(t *testing.T) {
	var out, errOut bytes.Buffer
	o := &FirewallOptions{Apply: func(context.Context) (firewall.Report, error) {
		return firewall.Report{Families: []firewall.Family{firewall.IPv4, firewall.IPv6}, Present: 5}, nil
	}}
	if err := RunFirewall(context.Background(), &Global{}, o, IO{Out: &out, ErrOut: &errOut}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "DOCKER-USER: 169.254.169.254 rejected for containers (IPv4, IPv6), rules already in place\n" {
		t.Errorf("stdout = %q", got)
	}

	o.Apply = func(context.Context) (firewall.Report, error) {
		return firewall.Report{}, &firewall.Error{Family: firewall.IPv4, Doing: "find iptables", Err: errors.New("not found")}
	}
	err := RunFirewall(context.Background(), &Global{}, o, IO{Out: &out, ErrOut: &errOut})
	var fe *firewall.Error
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "close the metadata service to containers: IPv4 DOCKER-USER: find iptables: not found") {
		t.Fatalf("err = %v", err)
	}
}

func TestFirewallIsACommand(t *testing.T) {
	var out bytes.Buffer
	if code := Execute(context.Background(), []string{"firewall", "--help"}, IO{Out: &out, ErrOut: &out}); code != 0 || !strings.Contains(out.String(), "DOCKER-USER") {
		t.Fatalf("firewall --help: exit %d\n%s", code, out.String())
	}
}
