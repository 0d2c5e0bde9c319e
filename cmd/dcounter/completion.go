package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

const completionHelp = `
Prints a script that completes dcounter's commands and their flags.

  bash: source <(dcounter completion bash)     (or save it in /etc/bash_completion.d/dcounter)
  zsh:  source <(dcounter completion zsh)      (or save it as _dcounter in a directory of $fpath)
  fish: dcounter completion fish > ~/.config/fish/completions/dcounter.fish
`

func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("completion", "completion bash|zsh|fish", completionHelp, stderr)
	fs.envOnly()
	pos, code, ok := fs.parseOrExit(args, stdout)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "dcounter completion: want one shell (bash, zsh or fish), got %d arguments\n", len(pos))
		return exitUsage
	}
	flags := commandFlags(ctx)
	switch pos[0] {
	case "bash":
		writeBash(stdout, flags)
	case "zsh":
		fmt.Fprint(stdout, "#compdef dcounter\nautoload -U +X bashcompinit && bashcompinit\n")
		writeBash(stdout, flags)
	case "fish":
		writeFish(stdout, flags)
	default:
		fmt.Fprintf(stderr, "dcounter completion: unknown shell %q (want bash, zsh or fish)\n", pos[0])
		return exitUsage
	}
	return 0
}

var helpFlag = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)

// commandFlags returns every command's flags, read from its --help so that
// the completion can never disagree with what the command accepts.
func commandFlags(ctx context.Context) map[string][]string {
	out := map[string][]string{}
	for _, c := range commands() {
		if c.name == "completion" {
			out[c.name] = nil
			continue
		}
		var b bytes.Buffer
		c.run(ctx, []string{"--help"}, &b, io.Discard)
		var names []string
		for _, m := range helpFlag.FindAllStringSubmatch(b.String(), -1) {
			names = append(names, "--"+m[1])
		}
		sort.Strings(names)
		out[c.name] = names
	}
	return out
}

func commandNames(flags map[string][]string) []string {
	var names []string
	for _, c := range commands() {
		if _, ok := flags[c.name]; ok {
			names = append(names, c.name)
		}
	}
	return names
}

func writeBash(w io.Writer, flags map[string][]string) {
	fmt.Fprintf(w, `_dcounter() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s" -- "$cur"))
    return
  fi
  local words
  case "${COMP_WORDS[1]}" in
`, strings.Join(commandNames(flags), " "))
	for _, name := range commandNames(flags) {
		words := strings.Join(flags[name], " ")
		if name == "completion" {
			words = "bash zsh fish"
		}
		fmt.Fprintf(w, "    %s) words=%q ;;\n", name, words)
	}
	fmt.Fprint(w, `    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _dcounter dcounter
`)
}

func writeFish(w io.Writer, flags map[string][]string) {
	fmt.Fprintln(w, "complete -c dcounter -f")
	for _, c := range commands() {
		if _, ok := flags[c.name]; !ok {
			continue
		}
		fmt.Fprintf(w, "complete -c dcounter -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
		for _, f := range flags[c.name] {
			fmt.Fprintf(w, "complete -c dcounter -n '__fish_seen_subcommand_from %s' -l %s\n", c.name, strings.TrimPrefix(f, "--"))
		}
	}
	fmt.Fprintln(w, "complete -c dcounter -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'")
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}
