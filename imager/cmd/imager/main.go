// Command imager builds the codelab DigitalOcean images with Packer and manages their
// snapshots. main only wires; the commands live in internal/cli.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/codelab-app/infra/imager/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := new(slog.LevelVar)
	g := &cli.Globals{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		Log:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Level: level,
	}
	code := cli.Execute(ctx, g, os.Args[1:])
	stop()
	os.Exit(code)
}
