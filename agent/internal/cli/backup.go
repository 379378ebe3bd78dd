package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/codelab-app/infra/agent/internal/backup"
	"github.com/codelab-app/infra/agent/internal/containers"
	"github.com/codelab-app/infra/agent/internal/fsutil"
	"github.com/codelab-app/infra/internal/exitcode"
)

// BackupOptions are `codelab-agent backup`'s options.
type BackupOptions struct {
	IgnoreWindow  bool
	JSON          bool
	Yes           bool
	TrustUnsigned bool

	// NewRunner builds the runner; nil means the real one (settings from
	// backup.ConfigFile, Docker through the docker command, Spaces).
	NewRunner func(g *Global, stdio IO) (*backup.Runner, error)
}

func newBackupCmd(g *Global, stdio IO) *cobra.Command {
	o := &BackupOptions{}
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up, list and restore the neo4j role's databases",
		Long: `backup runs on neo4j droplets. Settings come from ` + backup.ConfigFile + `,
the Spaces endpoint, bucket, region and keys from the 0600 secret file it
names. Every run records its outcome in ` + backup.StateFile + `, which
` + "`codelab-agent status`" + ` and the monitor show.

` + exitcode.Doc,
		Args: cobra.NoArgs,
	}
	run := &cobra.Command{
		Use:   "run",
		Short: "Take a backup now: dump, check, upload with checksums, apply retention",
		Long: `run takes one backup. Community: within the window, stop the database
container, dump every database with neo4j-admin, start it again. Enterprise:
online neo4j-admin database backup. Every dump is checked (neo4j-admin
database check) and uploaded with a manifest of SHA-256 checksums; the local
copy is deleted only after every checksum has been read back. Then backups
past retention are deleted from the bucket, never the newest.

The upload and its read-back show their progress on stderr: a live line on a
terminal, a log line every few seconds otherwise (the timer's journal).

A failed step exits 1 and leaves earlier backups untouched. Outside the
window a Community run does nothing and exits 0 (the timer fires daily).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunBackupRun(cmd.Context(), g, o, stdio) },
	}
	run.Flags().BoolVar(&o.IgnoreWindow, "ignore-window", false, "stop the database for a Community dump even outside the window")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the backups in the bucket, newest first",
		Long: `list shows every backup in the bucket, newest first: complete, incomplete
(no manifest: an upload that died; retention removes it after a day), or
quarantined (its manifest fails to parse or to validate, or has a newer
schema: retention moved it to <prefix>/quarantine/<id>/ and never deletes it;
look at it, then move it back or delete it by hand).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunBackupList(cmd.Context(), g, o, stdio) },
	}
	list.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	restore := &cobra.Command{
		Use:   "restore ID",
		Short: "Download a backup, verify it, stop the database, load it and start it again",
		Long: `restore downloads backup ID, verifies every file against the manifest's
SHA-256 and checks the dumps before it touches the database; then it stops
the database container, loads every database (replacing its data) and starts
the container again. It refuses to stop a running database without --yes.

The manifest must be valid (plain file names, Neo4j database names) and
carry a valid HMAC made with the manifest key (Consul KV
codelab/<env>/backup/manifest_key, in the secret file); otherwise restore
refuses, unless --trust-unsigned, which restores an unsigned or mis-signed
backup after a warning on stderr (its checksums are still verified).`,
		Example: `  codelab-agent backup list
  codelab-agent backup restore 20260102T030405Z --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return RunBackupRestore(cmd.Context(), g, o, args[0], stdio)
		},
	}
	restore.Flags().BoolVar(&o.Yes, "yes", false, "stop the running database and replace its data")
	restore.Flags().BoolVar(&o.TrustUnsigned, "trust-unsigned", false, "restore even when the manifest's HMAC is missing or does not match (warns)")
	cmd.AddCommand(run, list, restore)
	return cmd
}

func (o *BackupOptions) runner(g *Global, stdio IO) (*backup.Runner, error) {
	if o.NewRunner != nil {
		return o.NewRunner(g, stdio)
	}
	root := fsutil.Root{Dir: g.Root}
	cfg, err := backup.LoadConfig(root)
	if err != nil {
		return nil, err
	}
	docker, err := containers.NewEngine()
	if err != nil {
		return nil, err
	}
	return &backup.Runner{Root: root, Config: cfg, Engine: backup.Docker{Engine: docker}, Log: g.Logger(stdio.ErrOut)}, nil
}

// RunBackupRun is `backup run`.
func RunBackupRun(ctx context.Context, g *Global, o *BackupOptions, stdio IO) error {
	r, err := o.runner(g, stdio)
	if err != nil {
		return err
	}
	if r.Progress == nil {
		r.Progress = newTransferPrinter(stdio.ErrOut, g.Logger(stdio.ErrOut)).report
	}
	res, err := r.Run(ctx, backup.RunOptions{IgnoreWindow: o.IgnoreWindow})
	if errors.Is(err, backup.ErrOutsideWindow) {
		fmt.Fprintf(stdio.Out, "skipped: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Out, "backup %s: %s, verified, uploaded in %s (database down %s)\n",
		res.ID, backup.Human(res.SizeBytes), res.Duration().Round(time.Millisecond), res.Downtime().Round(time.Millisecond))
	return nil
}

// RunBackupList is `backup list`.
func RunBackupList(ctx context.Context, g *Global, o *BackupOptions, stdio IO) error {
	r, err := o.runner(g, stdio)
	if err != nil {
		return err
	}
	all, err := r.List(ctx)
	if err != nil {
		return err
	}
	if o.JSON {
		type row struct {
			ID          string        `json:"id"`
			At          time.Time     `json:"at"`
			Complete    bool          `json:"complete"`
			Quarantined bool          `json:"quarantined,omitempty"`
			Problem     string        `json:"problem,omitempty"` // why the manifest cannot be used
			SizeBytes   int64         `json:"sizeBytes"`
			Edition     string        `json:"edition,omitempty"`
			Files       []backup.File `json:"files,omitempty"`
		}
		rows := []row{}
		for _, b := range all {
			problem := ""
			if b.Err != nil {
				problem = b.Err.Error()
			}
			rows = append(rows, row{b.ID, b.At, b.Complete, b.Quarantined, problem, b.Size, b.Manifest.Edition, b.Manifest.Files})
		}
		enc := json.NewEncoder(stdio.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"schemaVersion": 1, "backups": rows})
	}
	return printBackups(stdio.Out, all)
}

func printBackups(w io.Writer, all []backup.Listed) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTAKEN (UTC)\tSIZE\tSTATE")
	for _, b := range all {
		state := "complete"
		switch {
		case b.Quarantined && b.Err != nil:
			state = "QUARANTINED: " + b.Err.Error()
		case b.Quarantined:
			state = "QUARANTINED"
		case b.Err != nil:
			state = "UNUSABLE (next run quarantines it): " + b.Err.Error()
		case !b.Complete:
			state = "incomplete (no manifest)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.ID, b.At.UTC().Format("2006-01-02 15:04"), backup.Human(b.Size), state)
	}
	if len(all) == 0 {
		fmt.Fprintln(tw, "(no backups)\t\t\t")
	}
	return tw.Flush()
}

// RunBackupRestore is `backup restore ID`.
func RunBackupRestore(ctx context.Context, g *Global, o *BackupOptions, id string, stdio IO) error {
	if _, err := time.Parse(backup.IDFormat, id); err != nil {
		return exitcode.UsageError("backup id %q: want the form 20260102T030405Z (see backup list)", id)
	}
	r, err := o.runner(g, stdio)
	if err != nil {
		return err
	}
	opts := backup.RestoreOptions{Yes: o.Yes, TrustUnsigned: o.TrustUnsigned,
		Warn: func(msg string) { fmt.Fprintf(stdio.ErrOut, "warning: %s\n", msg) }}
	if err := r.Restore(ctx, id, opts); err != nil {
		return err
	}
	fmt.Fprintf(stdio.Out, "restored backup %s\n", id)
	return nil
}
