package boot

import (
	"context"
	"log/slog"
	"time"

	"github.com/codelab-app/infra/agent/internal/consul"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/firewall"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/agent/internal/metadata"
	"github.com/codelab-app/infra/agent/internal/render"
	"github.com/codelab-app/infra/agent/internal/retry"
)

// Timeouts bound the steps that wait on something else. Zero means no
// limit: what a droplet waits on outside itself (a Consul leader, a KV key
// an operator has yet to set) is a wait, not a failure, and status says
// what it waits for and since when.
type Timeouts struct {
	Unit    time.Duration // each unit to become active
	Consul  time.Duration // agent answering and a leader (0: no limit)
	Env     time.Duration // consul-template's env files (0: no limit)
	Compose time.Duration // compose up --wait
}

// DefaultTimeouts are production's.
var DefaultTimeouts = Timeouts{Unit: 2 * time.Minute, Compose: 5 * time.Minute}

// Deps are what the plan's steps need from the outside world.
type Deps struct {
	Facts *Facts
	Rec   *Recorder
	Root  fsutil.Root
	Log   *slog.Logger

	Fetch        func(ctx context.Context) (metadata.Metadata, error)
	UserDataLine func() (string, error) // nil: the metadata's user_data
	Validators   []render.Validator
	Units        Units
	Consul       consul.Client
	Docker       containers.API
	DockerCLI    string
	TokenFile    string
	PullRetry    retry.Policy
	Timeouts     Timeouts
	// KVKeys lists Consul KV keys below a prefix (status of required keys).
	KVKeys func(ctx context.Context, prefix string) ([]string, error)
	// Previous is the last completed boot (ReadCompleted), nil on a first
	// boot: with it, a reboot starts the containers without waiting for
	// Consul.
	Previous *Completed
	// Firewall installs the rules that close the metadata service to
	// containers (firewall.Installer.Apply).
	Firewall func(ctx context.Context) (firewall.Report, error)
}

// NewPlan is the boot plan every role runs:
//
//	fetch-metadata -> parse-userdata -> render -> units -> consul-ready -> consul-acl -> compose-up
//	                                \-> registry-login (once per instance)
//	docker ---------------------------> pull-images ------------------------/
//	      \--------------------------> render
//	      \-> firewall                 (units and compose-up wait for it)
//
// pull-images needs only parse-userdata and docker, so image pulls overlap
// rendering, units and the wait for Consul. On a reboot (ComposeUp.Reboot)
// compose-up does not wait for consul-ready either: it starts once render
// and pull-images are done, from the env files the last boot rendered.
// Only a first boot waits on Consul KV. render needs docker for the
// Engine's API version (the Compose healthchecks' start_interval); the
// agent's unit starts after docker.service, so that wait is short. No
// container starts before the firewall step: units (consul-template's exec
// runs compose up) and compose-up wait for it.
func NewPlan(d Deps) Plan {
	if d.Facts == nil {
		d.Facts = &Facts{}
	}
	t := d.Timeouts
	compose := &ComposeUp{Facts: d.Facts, Root: d.Root, API: d.Docker, Docker: d.DockerCLI, EnvTimeout: t.Env, Timeout: t.Compose, Rec: d.Rec, KVKeys: d.KVKeys, Previous: d.Previous}
	return Plan{
		{Step: &FetchMetadata{Facts: d.Facts, Fetch: d.Fetch, Rec: d.Rec}, Kind: EveryBoot},
		{Step: &ParseUserdata{Facts: d.Facts, Line: d.UserDataLine, Rec: d.Rec}, Kind: EveryBoot, After: []string{StepFetchMetadata}},
		{Step: &Render{Facts: d.Facts, Root: d.Root, Validators: d.Validators, Log: d.Log}, Kind: EveryBoot, After: []string{StepParseUserdata, StepDocker}},
		{Step: &RegistryLogin{Facts: d.Facts, Root: d.Root, TokenFile: d.TokenFile, Log: d.Log}, Kind: OncePerInstance, After: []string{StepParseUserdata}},
		{Step: &DockerStep{Facts: d.Facts, Units: d.Units, API: d.Docker, Timeout: t.Unit, Rec: d.Rec, Log: d.Log}, Kind: EveryBoot},
		{Step: &FirewallStep{Apply: d.Firewall, Rec: d.Rec}, Kind: EveryBoot, After: []string{StepDocker}},
		{Step: &UnitsStep{Facts: d.Facts, Root: d.Root, Units: d.Units, Timeout: t.Unit, Rec: d.Rec}, Kind: EveryBoot, After: []string{StepRender, StepDocker, StepFirewall}},
		{Step: &ConsulReady{Facts: d.Facts, Consul: d.Consul, Timeout: t.Consul, Rec: d.Rec}, Kind: EveryBoot, After: []string{StepUnits}},
		{Step: &ConsulACL{Facts: d.Facts, Consul: d.Consul, Rec: d.Rec, Log: d.Log}, Kind: EveryBoot, After: []string{StepConsulReady}},
		{Step: &PullImages{Facts: d.Facts, Puller: &containers.Puller{API: d.Docker, Retry: d.PullRetry, Log: d.Log}, Root: d.Root, TokenFile: d.TokenFile, Rec: d.Rec}, Kind: EveryBoot, After: []string{StepParseUserdata, StepDocker}},
		{Step: compose, Kind: EveryBoot, After: []string{StepPullImages, StepRender, StepFirewall, StepConsulReady, StepConsulACL},
			Shortcut: &Shortcut{Skip: []string{StepConsulReady, StepConsulACL}, Take: compose.Reboot}},
	}
}
