// Command localdo is a local DigitalOcean backed by Docker: `localdo serve` runs the API
// and the droplet metadata service, `localdo start` runs it in the background and waits
// until it answers, `localdo env` prints the variables that point clients at it, and
// `localdo down` removes everything it made.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/codelab-app/infra/e2e/internal/localdo/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.New(cli.IO{Out: os.Stdout, ErrOut: os.Stderr}).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "localdo:", err)
		os.Exit(1)
	}
}
