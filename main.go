// Command canal runs Canal: background jobs driven through channels, a
// transactional outbox, and a live dashboard. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/canalhq/canal/server"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		// Restore the default handlers before shutdown begins, so a second
		// signal ends the process at once instead of waiting for the drain.
		signal.Stop(sigs)
		cancel()
	}()
	if err := server.Run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "canal:", err)
		os.Exit(1)
	}
}
