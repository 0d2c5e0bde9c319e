package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const exitUsage = 2

// exitError ends a command with an exit code; whatever the command had to
// say is already on stderr.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a mistake in the command line found while parsing it (a
// flag, its value, a command): run prints it with a pointer to --help.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// envScope says which environment variables a command's flags are read
// from.
type envScope int

const (
	// envNone: flags come from the command line only.
	envNone envScope = iota
	// envServer: every flag, from DCOUNTER_<COMMAND>_<FLAG> first, then
	// DCOUNTER_<FLAG>, so that servers started from one shell need not
	// share their settings.
	envServer
	// envClient: only the flags in clientEnv (how to reach the server),
	// from DCOUNTER_<FLAG>, so that a verb's own settings (--by, --ttl,
	// --limit) never come from a variable left in the shell.
	envClient
)

// envAnnotation is the flag annotation listing the variables a flag is
// read from, the first set winning; the help prints it.
const envAnnotation = "dcounter_env"

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return "DCOUNTER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// commandFunc runs a command with its positional arguments and returns the
// exit code.
type commandFunc func(ctx context.Context, pos []string, stdout, stderr io.Writer) int

// newCommand returns a command whose synopsis is use (its first word the
// name); the caller registers its flags on c.Flags() and calls finish.
func newCommand(use, short, long string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Long: long}
}

// finish annotates c's flags with the environment variables scope reads
// them from and makes c run fn once every flag not given on the command
// line has been filled from its variable.
func finish(c *cobra.Command, scope envScope, fn commandFunc) *cobra.Command {
	c.Flags().VisitAll(func(f *pflag.Flag) {
		var names []string
		switch {
		case scope == envServer:
			names = []string{envName(c.Name() + "-" + f.Name), envName(f.Name)}
		case scope == envClient && isClientEnv(f.Name):
			names = []string{envName(f.Name)}
		default:
			return
		}
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations[envAnnotation] = names
	})
	c.RunE = func(cmd *cobra.Command, args []string) error {
		stderr := cmd.ErrOrStderr()
		if err := applyEnv(cmd.Flags()); err != nil {
			fmt.Fprintf(stderr, "dcounter %s: %v\n", cmd.Name(), err)
			fmt.Fprintf(stderr, "Run 'dcounter %s --help' for usage.\n", cmd.Name())
			return exitError{exitUsage}
		}
		if code := fn(cmd.Context(), args, cmd.OutOrStdout(), stderr); code != 0 {
			return exitError{code}
		}
		return nil
	}
	return c
}

// applyEnv fills every flag not given on the command line from the first
// of its variables that is set (empty counts as unset). A value that does
// not parse is an error naming the variable; every such one is reported.
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		for _, name := range f.Annotations[envAnnotation] {
			if v := os.Getenv(name); v != "" {
				if err := f.Value.Set(v); err != nil {
					errs = append(errs, fmt.Errorf("invalid value %q for $%s: %v", v, name, err))
				}
				return
			}
		}
	})
	return errors.Join(errs...)
}

// flagError makes pflag's messages read like the rest: an unknown flag is
// "unknown flag: --bogus", a bad value "invalid value "x" for --by: ...".
func flagError(_ *cobra.Command, err error) error {
	var iv *pflag.InvalidValueError
	if errors.As(err, &iv) {
		err = fmt.Errorf("invalid value %q for --%s: %v", iv.GetValue(), iv.GetFlag().Name, iv.Unwrap())
	}
	return usageError{err}
}

// commands are dcounter's commands, in the order the help lists them.
func commands() []*cobra.Command {
	return []*cobra.Command{
		nodeCommand(),
		discoveryCommand(),
		gatewayCommand(),
		counterCommand("inc", "increment a counter: inc [KEY] [--by N] [--ttl DURATION]"),
		counterCommand("dec", "decrement a counter: dec [KEY] [--by N] [--ttl DURATION]"),
		counterCommand("get", "read a counter: get [KEY]"),
		delCommand(),
		ttlCommand(),
		persistCommand(),
		keysCommand(),
		nodesCommand(),
		statusCommand(),
		healthCommand(),
		keygenCommand(),
		secretsCommand(),
		versionCommand(),
		completionCommand(),
	}
}

// newRoot returns the root command over cmds.
func newRoot(cmds ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:               "dcounter",
		Short:             "a replicated counter service that keeps counting through crashes and partitions",
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(cmd *cobra.Command, args []string) error {
			// Only reached without a command: unknown ones are refused
			// while the command line is parsed.
			usage(cmd, cmd.ErrOrStderr())
			return exitError{exitUsage}
		},
	}
	root.AddCommand(cmds...)
	// cobra completes command names; this adds their aliases (members).
	root.ValidArgsFunction = func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, sub := range c.Commands() {
			for _, a := range sub.Aliases {
				if len(args) == 0 && strings.HasPrefix(a, toComplete) {
					out = append(out, cobra.CompletionWithDesc(a, "the same as "+sub.Name()))
				}
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	// cobra's help command prints the root's usage and exits 0 for an
	// unknown command; make that the usage error it is.
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" && c.Run != nil {
			show := c.Run
			c.Run = nil
			c.RunE = func(c *cobra.Command, args []string) error {
				if found, _, err := c.Root().Find(args); found == nil || err != nil {
					return usageError{fmt.Errorf("unknown command %q", strings.Join(args, " "))}
				}
				show(c, args)
				return nil
			}
		}
	}
	root.SetFlagErrorFunc(flagError)
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { usage(c, c.OutOrStdout()) })
	root.SetUsageFunc(func(c *cobra.Command) error { usage(c, c.ErrOrStderr()); return nil })
	return root
}

func init() {
	// The commands are listed in the order they are added: servers first.
	cobra.EnableCommandSorting = false
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execute(ctx, newRoot(commands()...), args, stdout, stderr)
}

// execute runs the command line args on root and returns the exit code.
func execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetOut(stdout)
	root.SetErr(stderr)
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// A usage error found while parsing: an unknown command or flag, a bad
	// flag value, a wrong number of arguments.
	if cmd == nil || cmd == root {
		fmt.Fprintf(stderr, "dcounter: %v\n\n", err)
		usage(root, stderr)
		return exitUsage
	}
	fmt.Fprintf(stderr, "dcounter %s: %v\n", cmd.Name(), err)
	fmt.Fprintf(stderr, "Run 'dcounter %s --help' for usage.\n", cmd.Name())
	return exitUsage
}

// usage prints c's help: the command list for the root, else the synopsis,
// the description and every flag with the variables it is read from.
func usage(c *cobra.Command, w io.Writer) {
	if !c.HasParent() {
		rootUsage(c, w)
		return
	}
	fmt.Fprintf(w, "Usage: dcounter %s\n\n%s\n\n", c.Use, strings.TrimSpace(cmp.Or(c.Long, c.Short)))
	all := true
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && len(f.Annotations[envAnnotation]) == 0 {
			all = false
		}
	})
	if all {
		fmt.Fprintln(w, "Flags (each also read from the environment variable shown):")
	} else {
		fmt.Fprintln(w, "Flags (those with a [$VARIABLE] are also read from it; the others only from the command line):")
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		name, use := pflag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		if env := f.Annotations[envAnnotation]; len(env) > 0 {
			fmt.Fprintf(w, "    [$%s]", strings.Join(env, ", $"))
		}
		fmt.Fprintf(w, "\n      %s", strings.ReplaceAll(use, "\n", "\n      "))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintln(w, "  -h, --help\n      print this help")
}

func rootUsage(root *cobra.Command, w io.Writer) {
	fmt.Fprint(w, `dcounter — a replicated counter service that keeps counting through crashes and partitions.

Usage:
  dcounter <command> [arguments]

Commands:
`)
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		fmt.Fprintf(w, "  %-11s %s\n", c.Name(), c.Short)
		for _, a := range c.Aliases {
			fmt.Fprintf(w, "  %-11s the same as %s\n", a, c.Name())
		}
	}
	fmt.Fprint(w, `
Flags can also be set through environment variables, a flag on the command
line winning. The servers (node, gateway, discovery) read every flag so:
--gossip-addr from DCOUNTER_GOSSIP_ADDR, and so on, or first from a variable
scoped to the command (DCOUNTER_NODE_GOSSIP_ADDR, DCOUNTER_GATEWAY_HTTP_ADDR)
so that servers started from one shell need not share. The client verbs read
only how to reach the server: DCOUNTER_ADDR, DCOUNTER_TOKEN, DCOUNTER_CA,
DCOUNTER_CLIENT_CERT, DCOUNTER_CLIENT_KEY and DCOUNTER_TIMEOUT; their other
flags (--by, --ttl, --json, ...) come only from the command line. A value
that does not parse is a usage error naming the variable (exit 2).

Run "dcounter <command> --help" for a command's flags, and
"dcounter completion --help" to install shell completion.
`)
}
