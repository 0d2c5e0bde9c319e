package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

const completionHelp = `
Prints a script that completes dcounter's commands, their flags and the
values some of them take. The script asks this binary what to complete
(through the hidden "dcounter __complete" command), so it never disagrees
with the commands and flags the binary has.

  bash:       source <(dcounter completion bash)
              (or save it as /etc/bash_completion.d/dcounter; needs the
              bash-completion package)
  zsh:        source <(dcounter completion zsh)
              (or save it as _dcounter in a directory of $fpath)
  fish:       dcounter completion fish > ~/.config/fish/completions/dcounter.fish
  powershell: dcounter completion powershell | Out-String | Invoke-Expression
`

var shells = []string{"bash", "zsh", "fish", "powershell"}

func completionCommand() *cobra.Command {
	cmd := newCommand("completion bash|zsh|fish|powershell", "print a shell completion script: completion bash|zsh|fish", completionHelp)
	cmd.ValidArgs = shells
	return finish(cmd, envNone, func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) != 1 {
			fmt.Fprintf(stderr, "dcounter completion: want one shell (bash, zsh, fish or powershell), got %d arguments\n", len(pos))
			return exitUsage
		}
		root := cmd.Root()
		var err error
		switch pos[0] {
		case "bash":
			err = root.GenBashCompletionV2(stdout, true)
		case "zsh":
			err = root.GenZshCompletion(stdout)
		case "fish":
			err = root.GenFishCompletion(stdout, true)
		case "powershell":
			err = root.GenPowerShellCompletionWithDesc(stdout)
		default:
			fmt.Fprintf(stderr, "dcounter completion: unknown shell %q (want bash, zsh, fish or powershell)\n", pos[0])
			return exitUsage
		}
		if err != nil {
			fmt.Fprintf(stderr, "dcounter completion: %v\n", err)
			return 1
		}
		return 0
	})
}
