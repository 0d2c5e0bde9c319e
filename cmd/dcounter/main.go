// Command dcounter is the distributed counter service: node, client verbs
// and tools in one binary. Run "dcounter --help".
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/dcounter/dcounter/internal/schedtune"
)

// tuned lists the commands that serve requests for as long as they run:
// they start with the runtime's monitor kept out of deep sleep (package
// schedtune), the client verbs and tools as they are.
var tuned = map[string]bool{"node": true, "gateway": true}

func main() {
	if len(os.Args) > 1 && tuned[os.Args[1]] {
		// Returns only if nothing needed changing or the exec failed.
		if err := schedtune.Exec(); err != nil {
			fmt.Fprintf(os.Stderr, "dcounter: running without GODEBUG=%s: %v\n", schedtune.Setting, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
