package userdata

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/codelab-app/infra/tools/testenv"
)

const (
	srvTLS  = " ca=" + testenv.TestCA + " ca_key=" + testenv.TestCAKey
	cliTLS  = " ca=" + testenv.TestCA + " consul_token=" + testenv.TestAPIToken
	gossip  = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
	doToken = "dop_v1_0123456789abcdef0123456789abcdef"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		in   string
		want Config
	}{
		{
			in: "#codelab v1 role=api gossip=" + gossip + " join=10.0.0.2,10.0.0.3" + cliTLS,
			want: Config{Role: "api", Env: "prod", Consul: "client", Join: Join{Addrs: []string{"10.0.0.2", "10.0.0.3"}},
				Version: "latest", Registry: DefaultRegistry, GossipKey: gossip, CA: testenv.TestCA, ConsulToken: testenv.TestAPIToken},
		},
		{
			in: "#codelab v1 role=neo4j env=staging consul=server bootstrap=5 join=tag:codelab-consul dc=fra1-a version=1.2.3 registry=registry.local:5000/codelab gossip=" + gossip + " registry_token=" + doToken + " do_token=" + doToken + srvTLS + "\r\n",
			want: Config{Role: "neo4j", Env: "staging", Consul: "server", Bootstrap: 5, Join: Join{Tag: "codelab-consul"}, DC: "fra1-a",
				Version: "1.2.3", Registry: "registry.local:5000/codelab", GossipKey: gossip, RegistryToken: doToken, DOToken: doToken, CA: testenv.TestCA, CAKey: testenv.TestCAKey},
		},
		{
			in: "#codelab   v1  consul=server role=web gossip=" + gossip + " do_token=" + doToken + srvTLS,
			want: Config{Role: "web", Env: "prod", Consul: "server", Bootstrap: 3, Join: Join{Tag: DefaultJoinTag},
				Version: "latest", Registry: DefaultRegistry, GossipKey: gossip, DOToken: doToken, CA: testenv.TestCA, CAKey: testenv.TestCAKey},
		},
		{
			in: "#codelab v1 role=sites gossip=" + gossip + " join=consul-1.internal:8301,10.1.1.1" + cliTLS,
			want: Config{Role: "sites", Env: "prod", Consul: "client", Join: Join{Addrs: []string{"consul-1.internal:8301", "10.1.1.1"}},
				Version: "latest", Registry: DefaultRegistry, GossipKey: gossip, CA: testenv.TestCA, ConsulToken: testenv.TestAPIToken},
		},
	}
	for _, tt := range tests {
		t.Run(tt.want.Role, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tt.want) || got.GossipKey != tt.want.GossipKey || got.DOToken != tt.want.DOToken {
				t.Fatalf("got  %#v\nwant %#v", got, tt.want)
			}
			again, err := Parse(got.Line())
			if err != nil {
				t.Fatalf("canonical line does not parse: %v", err)
			}
			if again.Line() != got.Line() {
				t.Fatalf("round trip changed the line:\n%s\n%s", got, again)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	ok := " gossip=" + gossip + " join=10.0.0.1"
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"is empty", "#codelab v1"}},
		{"missing marker", "role=api" + ok, []string{"token 1", "<8 characters>", "missing marker"}},
		{"shell script", "#!/bin/bash\necho hi", []string{"2 lines", "exactly one line"}},
		{"shebang one line", "#!/bin/bash -e", []string{`token 1 "#!/bin/bash"`, "missing marker", "#codelab v1"}},
		{"missing version", "#codelab", []string{"missing format version"}},
		{"future version", "#codelab v2 role=api", []string{`token 2 "v2"`, `reads "v1"`}},
		{"several lines", "#codelab v1 role=api\n#codelab v1 role=web\n", []string{"has 2 lines"}},
		{"over-long", "#codelab v1 role=api version=" + strings.Repeat("a", MaxLen), []string{"bytes; a codelab line is at most 2048"}},
		{"tab", "#codelab v1\trole=api", []string{"control character"}},
		{"unknown key", "#codelab v1 role=api colour=red" + ok, []string{`token 4 "colour=…"`, `unknown key "colour"`, "keys are role, env, consul"}},
		{"duplicate", "#codelab v1 role=api role=web" + ok, []string{`token 4 "role=web"`, `duplicate key "role" (already set by token 3)`}},
		{"bad role", "#codelab v1 role=db" + ok, []string{`token 3 "role=db"`, "one of api, web, landing, sites, neo4j"}},
		{"bad consul", "#codelab v1 role=api consul=cleint" + ok, []string{`token 4 "consul=cleint"`, "server or client"}},
		{"bad bootstrap", "#codelab v1 role=api consul=server bootstrap=two" + ok, []string{`"bootstrap=two"`, "1 to 9"}},
		{"bootstrap zero", "#codelab v1 role=api consul=server bootstrap=0" + ok, []string{`"bootstrap=0"`}},
		{"bootstrap on client", "#codelab v1 role=api bootstrap=3" + ok, []string{`token 4 "bootstrap=3"`, "only for consul=server"}},
		{"no equals", "#codelab v1 role=api consul" + ok, []string{`token 4 "consul"`, "expected key=value"}},
		{"empty value", "#codelab v1 role=api env=" + ok, []string{`token 4 "env="`, "empty value for env"}},
		{"bad env", "#codelab v1 role=api env=Prod!" + ok, []string{`"env=Prod!"`, "lower-case"}},
		{"bad join", "#codelab v1 role=api gossip=" + gossip + " join=tag:", []string{`"join=tag:"`, "tag:NAME"}},
		{"bad join addr", "#codelab v1 role=api gossip=" + gossip + " join=10.0.0.1,,x", []string{"join=10.0.0.1,,x"}},
		{"bad join port", "#codelab v1 role=api gossip=" + gossip + " join=10.0.0.1:99999", []string{"join=10.0.0.1:99999"}},
		{"duplicate join addr", "#codelab v1 role=api gossip=" + gossip + " join=10.0.0.1,10.0.0.1", []string{"join="}},
		{"bad version", "#codelab v1 role=api version=../etc" + ok, []string{`"version=../etc"`, "image tag"}},
		{"bad registry", "#codelab v1 role=api registry=HTTP://x" + ok, []string{`"registry=HTTP://x"`}},
		{"missing role", "#codelab v1 env=prod" + ok, []string{"missing required key role"}},
		{"missing gossip", "#codelab v1 role=api join=10.0.0.1", []string{"missing required key gossip", "consul keygen"}},
		{"tag join without token", "#codelab v1 role=api gossip=" + gossip, []string{"join=tag:codelab-consul needs do_token"}},
		{"missing ca", "#codelab v1 role=api" + ok, []string{"missing required key ca", "--new-ca"}},
		{"bad ca", "#codelab v1 role=api ca=AAAA" + ok, []string{`"ca=AAAA"`, "CA certificate"}},
		{"ca_key on client", "#codelab v1 role=api" + ok + srvTLS, []string{`"ca_key=<redacted>"`, "ca_key is only for consul=server"}},
		{"server without ca_key", "#codelab v1 role=api consul=server" + ok + " ca=" + testenv.TestCA, []string{"consul=server needs ca_key="}},
		{"consul_token on a server", "#codelab v1 role=api consul=server" + ok + srvTLS + " consul_token=" + testenv.TestAPIToken, []string{`"consul_token=<redacted>"`, "only for consul=client"}},
		{"client without consul_token", "#codelab v1 role=api" + ok + " ca=" + testenv.TestCA, []string{"consul=client needs consul_token="}},
		{"bad consul_token", "#codelab v1 role=api consul_token=not-a-uuid" + ok, []string{`"consul_token=<redacted>"`, "UUID"}},
		{"ca_key of another CA", "#codelab v1 role=api consul=server" + ok + " ca=" + testenv.TestCA + " ca_key=" + testenv.OtherCAKey, []string{`"ca_key=<redacted>"`, "does not belong to the certificate in ca="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tt.in)
			}
			var ue *Error
			if !errors.As(err, &ue) {
				t.Fatalf("error is %T, want *Error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, secret := range []string{gossip, testenv.TestCAKey, testenv.OtherCAKey, testenv.TestAPIToken} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

func TestSecretsNeverInErrorsOrRedacted(t *testing.T) {
	secretLines := []string{
		"#codelab v1 role=api gossip=not-base64-" + doToken,                    // bad secret value
		"#codelab v1 role=api gossip=" + gossip + " gossip=" + gossip,          // duplicate secret
		"#codelab v1 role=api registry_token=" + doToken + " registry_token=x", // duplicate token
		"#codelab v1 role=api do_token=" + doToken + "!" + " gossip=" + gossip, // bad token
		"#codelab v1 role=api " + doToken + " gossip=" + gossip,                // token pasted without key
		"#codelab v1 role=api gosip=" + gossip,                                 // misspelt key
		gossip + " #codelab v1 role=api",                                       // secret first
	}
	for _, line := range secretLines {
		_, err := Parse(line)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", line)
		}
		for _, s := range []string{gossip, doToken, gossip[:20], doToken[:20]} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q leaks %q", err, s)
			}
		}
	}
	c, err := Parse("#codelab v1 role=api consul=server gossip=" + gossip + " registry_token=" + doToken + " do_token=" + doToken + srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{c.Redacted(), fmt.Sprintf("%v %+v %#v %s %s", c, c, c, c.GossipKey, c.CAKey)} {
		if strings.Contains(out, gossip) || strings.Contains(out, doToken) || strings.Contains(out, testenv.TestCAKey) {
			t.Errorf("output leaks a secret: %s", out)
		}
	}
	if !strings.Contains(c.Line(), gossip) || !strings.Contains(c.Line(), doToken) {
		t.Error("Line must carry the secrets: it is what Terraform writes")
	}
}

func TestDatacenterDefaultsToRegion(t *testing.T) {
	if got := (Config{}).Datacenter("nyc3"); got != "nyc3" {
		t.Fatal(got)
	}
	if got := (Config{DC: "dc1"}).Datacenter("nyc3"); got != "dc1" {
		t.Fatal(got)
	}
}

func TestHelpListsEveryKey(t *testing.T) {
	h := Help()
	for _, k := range KeyNames() {
		if !strings.Contains(h, "  "+k+" ") {
			t.Errorf("help does not document %s", k)
		}
	}
}

// FuzzParse checks that Parse never panics, that whatever it accepts comes
// back unchanged through the canonical line, and that no error repeats a
// secret value.
func FuzzParse(f *testing.F) {
	f.Add("#codelab v1 role=api gossip=" + gossip + " join=10.0.0.1" + cliTLS)
	f.Add("#codelab v1 role=neo4j consul=server bootstrap=3 gossip=" + gossip + " do_token=" + doToken + srvTLS)
	f.Add("#codelab v1 role=web role=web")
	f.Add("#!/bin/bash\n")
	f.Fuzz(func(t *testing.T, line string) {
		c, err := Parse(line)
		if err != nil {
			msg := err.Error()
			for _, tok := range strings.Fields(line) {
				name, val, ok := strings.Cut(tok, "=")
				if ok && len(val) >= 8 && (name == "gossip" || name == "registry_token" || name == "do_token" || name == "ca_key" || name == "consul_token") && strings.Contains(msg, val) {
					t.Fatalf("error %q repeats the value of %s", msg, name)
				}
			}
			return
		}
		again, err := Parse(c.Line())
		if err != nil {
			t.Fatalf("canonical line %q of %q does not parse: %v", c.Redacted(), line, err)
		}
		if again.Line() != c.Line() {
			t.Fatalf("round trip changed %q to %q", c.Redacted(), again.Redacted())
		}
	})
}

func TestTokens(t *testing.T) {
	srv, err := Parse("#codelab v1 role=neo4j consul=server join=10.0.0.1 gossip=" + gossip + srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Parse("#codelab v1 role=api join=10.0.0.1 gossip=" + gossip + cliTLS)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  func() (Secret, error)
		want string
	}{
		{"server role token", srv.RoleToken, testenv.TestNeo4jToken},
		{"server management token", srv.ManagementToken, testenv.TestManagementToken},
		{"client role token", cl.RoleToken, testenv.TestAPIToken},
		{"client management token", cl.ManagementToken, ""},
	} {
		got, err := tc.got()
		if err != nil || got.Reveal() != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.name, got.Reveal(), err, tc.want)
		}
	}
}
