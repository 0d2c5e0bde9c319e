package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// serverFlags are the flags every long-running command shares.
type serverFlags struct{ logLevel, logFormat, debugAddr string }

func (sf *serverFlags) register(c *cobra.Command) {
	fs := c.Flags()
	fs.StringVar(&sf.debugAddr, "debug-addr", "", "`host:port` to serve Go profiling (/debug/pprof/) on; off when empty, never expose it publicly")
	fs.StringVar(&sf.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&sf.logFormat, "log-format", "text", "log `format`: text or json")
	completeValues(c, "log-level", "debug", "info", "warn", "error")
	completeValues(c, "log-format", "text", "json")
}

// completeValues makes shell completion offer values for --flag.
func completeValues(c *cobra.Command, flag string, values ...string) {
	c.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// start checks that a server command got no positional arguments, builds
// its logger and starts the profiling server if asked; ok is false when
// the caller should return code at once. The caller defers stop.
func (sf *serverFlags) start(name string, pos []string, stderr io.Writer) (log *slog.Logger, stop func(), code int, ok bool) {
	stop = func() {}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "dcounter %s: unexpected argument %q (run 'dcounter %s --help')\n", name, pos[0], name)
		return nil, stop, exitUsage, false
	}
	log, err := newLogger(stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "dcounter %s: %v\n", name, err)
		return nil, stop, exitUsage, false
	}
	if sf.debugAddr != "" {
		if stop, err = serveDebug(sf.debugAddr, log); err != nil {
			fmt.Fprintf(stderr, "dcounter %s: --debug-addr: %v\n", name, err)
			return nil, func() {}, 1, false
		}
	}
	return log, stop, 0, true
}
