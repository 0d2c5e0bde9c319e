package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// flagSet is a flag.FlagSet whose flags fall back to DCOUNTER_* environment
// variables and may be interleaved with positional arguments.
type flagSet struct {
	*flag.FlagSet
	synopsis string
	help     string
	// env lists the flags read from the environment; nil means all (the
	// servers', whose deployments configure them so).
	env map[string]bool
}

// envOnly limits the flags read from the environment to names (none if
// empty), so that a variable meant for one command cannot change another
// command's behaviour: client verbs read only how to reach the server.
func (fs *flagSet) envOnly(names ...string) {
	fs.env = map[string]bool{}
	for _, n := range names {
		fs.env[n] = true
	}
}

func (fs *flagSet) readsEnv(name string) bool { return fs.env == nil || fs.env[name] }

// envNames are the variables a flag is read from, the first set winning: a
// server's flag also from one scoped to its command (DCOUNTER_GATEWAY_HTTP_ADDR
// before DCOUNTER_HTTP_ADDR), so that servers started from one shell can be
// told apart; a client verb's only from the shared one.
func (fs *flagSet) envNames(flagName string) []string {
	if fs.env != nil {
		return []string{envName(flagName)}
	}
	return []string{envName(fs.Name() + "-" + flagName), envName(flagName)}
}

func newFlagSet(name, synopsis, help string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis, help: help}
	fs.SetOutput(stderr)
	fs.Usage = func() {} // --help is printed to stdout by parseOrExit; errors get a pointer to it
	return fs
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return "DCOUNTER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (fs *flagSet) printUsage(w io.Writer) {
	header := "Flags (each also read from the environment variable shown):"
	if fs.env != nil {
		header = "Flags (those with a [$VARIABLE] are also read from it; the others only from the command line):"
	}
	fmt.Fprintf(w, "Usage: dcounter %s\n\n%s\n\n%s\n", fs.synopsis, strings.TrimSpace(fs.help), header)
	fs.VisitAll(func(f *flag.Flag) {
		name, use := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		if fs.readsEnv(f.Name) {
			fmt.Fprintf(w, "    [$%s]", strings.Join(fs.envNames(f.Name), ", $"))
		}
		fmt.Fprintf(w, "\n      %s", strings.ReplaceAll(use, "\n", "\n      "))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parse parses args, allowing flags after positional arguments, then fills
// every flag not given on the command line from its environment variable.
// It returns the positional arguments. flag.ErrHelp is returned for --help.
func (fs *flagSet) parse(args []string) ([]string, error) {
	var pos []string
	out := fs.Output()
	defer fs.SetOutput(out)
	for {
		var msg strings.Builder
		fs.SetOutput(&msg)
		err := fs.Parse(args)
		fs.SetOutput(out)
		fmt.Fprint(out, dashDash(msg.String()))
		if err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// flag.Parse consumes a "--" terminator itself: everything after it
		// is positional.
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || !fs.readsEnv(f.Name) {
			return
		}
		for _, name := range fs.envNames(f.Name) {
			if v := os.Getenv(name); v != "" { // empty counts as unset
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("invalid value %q for $%s: %v", v, name, err))
				}
				return
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(fs.Output(), err)
		return nil, err
	}
	return pos, nil
}

// dashDash spells the flag names in package flag's messages ("flag
// provided but not defined: -bogus", "invalid value "x" for flag -by") the
// way the help and the README do: --bogus, --by.
func dashDash(msg string) string {
	for _, p := range []string{"not defined: -", "for flag -", "for -", "needs an argument: -"} {
		msg = strings.ReplaceAll(msg, p, p+"-")
	}
	return msg
}

// parseOrExit runs parse and turns its outcome into an exit code; ok is
// false when the caller should return code at once.
func (fs *flagSet) parseOrExit(args []string, stdout io.Writer) (pos []string, code int, ok bool) {
	pos, err := fs.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.printUsage(stdout)
		return nil, 0, false
	}
	if err != nil {
		fmt.Fprintf(fs.Output(), "Run 'dcounter %s --help' for usage.\n", fs.Name())
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// serverFlags are the flags every long-running command shares.
type serverFlags struct{ logLevel, logFormat, debugAddr string }

func (sf *serverFlags) register(fs *flagSet) {
	fs.StringVar(&sf.debugAddr, "debug-addr", "", "`host:port` to serve Go profiling (/debug/pprof/) on; off when empty, never expose it publicly")
	fs.StringVar(&sf.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&sf.logFormat, "log-format", "text", "log `format`: text or json")
}

// parse parses a server command's args, which take no positional
// arguments, builds its logger and starts the profiling server if asked; ok
// is false when the caller should return code at once. The caller defers
// stop.
func (sf *serverFlags) parse(fs *flagSet, args []string, stdout, stderr io.Writer) (log *slog.Logger, stop func(), code int, ok bool) {
	stop = func() {}
	pos, code, ok := fs.parseOrExit(args, stdout)
	if !ok {
		return nil, stop, code, false
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "dcounter %s: unexpected argument %q\n", fs.Name(), pos[0])
		return nil, stop, exitUsage, false
	}
	log, err := newLogger(stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "dcounter %s: %v\n", fs.Name(), err)
		return nil, stop, exitUsage, false
	}
	if sf.debugAddr != "" {
		if stop, err = serveDebug(sf.debugAddr, log); err != nil {
			fmt.Fprintf(stderr, "dcounter %s: --debug-addr: %v\n", fs.Name(), err)
			return nil, func() {}, 1, false
		}
	}
	return log, stop, 0, true
}
