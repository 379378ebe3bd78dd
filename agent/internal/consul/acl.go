package consul

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"
)

// AnonymousAccessor is Consul's built-in anonymous token.
const AnonymousAccessor = "00000000-0000-0000-0000-000000000002"

// AnonymousPolicy is what a request without a token may do: see nodes,
// services, agents and the Raft peers (what `consul members` and a health
// check show), and nothing of KV, sessions or ACLs.
const AnonymousPolicy = "codelab-anonymous"

// RoleToken is one role's token: its derived ids and the services its
// droplets register (the names in roles/<role>/consul/*.hcl).
type RoleToken struct {
	Role     string
	Accessor string
	Secret   string
	Services []string
}

// PolicyName is the name of a role's policy in env.
func PolicyName(env, role string) string { return "codelab-" + env + "-" + role }

// RoleRules are the ACL rules of a role in env, least privilege:
//   - write its own nodes (the nodes of a role are named <role>-<n>) and
//     sessions on them, read every node;
//   - write its own services, read every service (the api finds neo4j);
//   - read its KV folder codelab/<env>/<role>/ (neo4j also the backup
//     settings codelab/<env>/backup/), nothing else of the env;
//   - publish its nodes' fleet records codelab/_fleet/<env>/<role>-…, read
//     every record (`status --fleet`).
func RoleRules(env, role string, services []string) string {
	var b strings.Builder
	rule := func(kind, name, policy string) {
		fmt.Fprintf(&b, "%s %q {\n  policy = %q\n}\n", kind, name, policy)
	}
	rule("node_prefix", role+"-", "write")
	rule("node_prefix", "", "read")
	rule("agent_prefix", role+"-", "read")
	rule("session_prefix", role+"-", "write")
	svcs := slices.Clone(services)
	sort.Strings(svcs)
	for _, s := range svcs {
		rule("service", s, "write")
	}
	rule("service_prefix", "", "read")
	rule("key_prefix", "codelab/"+env+"/"+role+"/", "read")
	if role == "neo4j" {
		rule("key_prefix", "codelab/"+env+"/backup/", "read")
	}
	rule("key_prefix", "codelab/_fleet/", "read")
	rule("key_prefix", "codelab/_fleet/"+env+"/"+role+"-", "write")
	return b.String()
}

// AnonymousRules are AnonymousPolicy's rules.
const AnonymousRules = `node_prefix "" {
  policy = "read"
}
service_prefix "" {
  policy = "read"
}
agent_prefix "" {
  policy = "read"
}
operator = "read"
`

// BootstrapACL makes the cluster's policies and role tokens exist as
// given, creating or updating each: running it again changes nothing. The
// client must carry a management token, and there must be a leader.
func (c Client) BootstrapACL(ctx context.Context, env string, roles []RoleToken) error {
	cl, err := c.api(ctx)
	if err != nil {
		return err
	}
	acl := cl.ACL()
	if err := upsertPolicy(ctx, acl, AnonymousPolicy, "Requests without a token: catalog and members, no KV", AnonymousRules); err != nil {
		return err
	}
	anon, _, err := acl.TokenRead(AnonymousAccessor, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("read the anonymous token: %w", err)
	}
	if !hasPolicy(anon, AnonymousPolicy) {
		anon.Policies = append(anon.Policies, &api.ACLTokenPolicyLink{Name: AnonymousPolicy})
		if _, _, err := acl.TokenUpdate(anon, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("give the anonymous token %s: %w", AnonymousPolicy, err)
		}
	}
	for _, r := range roles {
		name := PolicyName(env, r.Role)
		if err := upsertPolicy(ctx, acl, name, "codelab role "+r.Role+" in "+env, RoleRules(env, r.Role, r.Services)); err != nil {
			return err
		}
		tok, err := readToken(ctx, acl, r.Accessor)
		if err != nil {
			return fmt.Errorf("read the %s token: %w", r.Role, err)
		}
		if tok != nil {
			if tok.SecretID != r.Secret {
				return fmt.Errorf("the %s token (accessor %s) exists with another secret: it was not made from this cluster's CA key", r.Role, r.Accessor)
			}
			if hasPolicy(tok, name) && len(tok.Policies) == 1 {
				continue
			}
			tok.Policies = []*api.ACLTokenPolicyLink{{Name: name}}
			if _, _, err := acl.TokenUpdate(tok, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
				return fmt.Errorf("update the %s token: %w", r.Role, err)
			}
			continue
		}
		_, _, err = acl.TokenCreate(&api.ACLToken{
			AccessorID:  r.Accessor,
			SecretID:    r.Secret,
			Description: "codelab role " + r.Role + " in " + env,
			Policies:    []*api.ACLTokenPolicyLink{{Name: name}},
		}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("create the %s token: %w", r.Role, err)
		}
	}
	return nil
}

func upsertPolicy(ctx context.Context, acl *api.ACL, name, desc, rules string) error {
	// A policy that does not exist reads as nil, without an error.
	p, _, err := acl.PolicyReadByName(name, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("read policy %s: %w", name, err)
	}
	if p == nil {
		if _, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: name, Description: desc, Rules: rules}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("create policy %s: %w", name, err)
		}
		return nil
	}
	if p.Rules == rules {
		return nil
	}
	p.Rules, p.Description = rules, desc
	if _, _, err := acl.PolicyUpdate(p, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("update policy %s: %w", name, err)
	}
	return nil
}

func hasPolicy(t *api.ACLToken, name string) bool {
	for _, p := range t.Policies {
		if p.Name == name {
			return true
		}
	}
	return false
}

// readToken reads the token with accessor id, or nil when there is none.
// A missing token is told by its absence from the list, not by an error's
// text.
func readToken(ctx context.Context, acl *api.ACL, accessor string) (*api.ACLToken, error) {
	list, _, err := acl.TokenList((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	for _, e := range list {
		if e.AccessorID == accessor {
			t, _, err := acl.TokenRead(accessor, (&api.QueryOptions{}).WithContext(ctx))
			return t, err
		}
	}
	return nil, nil
}
