package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dcounter/dcounter/internal/atomicfile"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const secretsHelp = `
Makes and reads the secrets a secure cluster needs, so that scripts and
containers can start one without anybody pasting keys around.

  dcounter secrets init DIR         create DIR/cluster.key (a new cluster key)
                                    and DIR/auth (one admin, one write and one
                                    read token) unless they exist; files are
                                    readable by their owner only
  dcounter secrets token DIR ROLE   print the first token of ROLE in DIR/auth

Point nodes, discovery servers and gateways at them with
--cluster-key-file DIR/cluster.key and (nodes and gateways) --auth-file DIR/auth;
point clients at a token with --token or DCOUNTER_TOKEN.
`

// Names of the files in a secrets dir.
const (
	secretsKeyFile  = "cluster.key"
	secretsAuthFile = "auth"
)

func secretsCommand() *cobra.Command {
	c := newCommand("secrets init DIR | secrets token DIR ROLE", "create a secrets dir (cluster key, client tokens) for a secure cluster", secretsHelp)
	c.ValidArgs = []string{"init", "token"}
	return finish(c, envNone, runSecrets)
}

func runSecrets(_ context.Context, pos []string, stdout, stderr io.Writer) int {
	switch {
	case len(pos) == 2 && pos[0] == "init":
		created, err := initSecrets(pos[1])
		if err != nil {
			fmt.Fprintf(stderr, "dcounter secrets init: %v\n", err)
			return 1
		}
		for _, f := range created {
			fmt.Fprintf(stdout, "created %s\n", f)
		}
		return 0
	case len(pos) == 3 && pos[0] == "token":
		tok, err := secretToken(pos[1], pos[2])
		if err != nil {
			fmt.Fprintf(stderr, "dcounter secrets token: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, tok)
		return 0
	}
	fmt.Fprintln(stderr, "dcounter secrets: want 'init DIR' or 'token DIR ROLE'")
	fmt.Fprintln(stderr, "Run 'dcounter secrets --help' for usage.")
	return exitUsage
}

// initSecrets creates the key and auth files in dir that do not exist yet
// and returns the paths it created. Existing files are never touched, so
// running it again (every container start, say) keeps the cluster's secrets.
func initSecrets(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var created []string
	write := func(name, content string) error {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			return nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := atomicfile.Write(path, []byte(content)); err != nil {
			return err
		}
		if err := os.Chmod(path, 0o600); err != nil {
			return err
		}
		created = append(created, path)
		return nil
	}
	if err := write(secretsKeyFile, clusterkey.Generate()+"\n"); err != nil {
		return created, err
	}
	auth := "# dcounter client tokens: TOKEN ROLE [NAME]; roles: read, write, admin.\n"
	for _, role := range []string{"admin", "write", "read"} {
		auth += newToken() + " " + role + " " + role + "\n"
	}
	if err := write(secretsAuthFile, auth); err != nil {
		return created, err
	}
	return created, nil
}

// newToken returns 32 random bytes as unpadded URL-safe base64.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// secretToken returns the first token with role in dir's auth file.
func secretToken(dir, role string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, secretsAuthFile))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && f[1] == role {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("no %s token in %s", role, filepath.Join(dir, secretsAuthFile))
}

// readKeyFile reads a keyring from a file written like --cluster-key's
// value (comma- or newline-separated base64 keys, primary first).
func readKeyFile(path string) (clusterkey.Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return clusterkey.Keyring{}, err
	}
	r, err := clusterkey.Parse(strings.ReplaceAll(string(b), "\n", ","))
	if err == nil && r.Empty() {
		err = fmt.Errorf("%s holds no key", path)
	}
	return r, err
}

// keyFlags are --cluster-key and --cluster-key-file, shared by node,
// discovery and gateway.
type keyFlags struct{ key, file string }

func (kf *keyFlags) register(fs *pflag.FlagSet, use string) {
	fs.StringVar(&kf.key, "cluster-key", "", "cluster `keys`: comma-separated base64 32-byte keys, the first used to "+use+", all accepted (make one with 'dcounter keygen'). "+
		"Rotate by adding the new key everywhere, then moving it first, then removing the old one. Prefer --cluster-key-file or the environment variable: command lines are visible to other users")
	fs.StringVar(&kf.file, "cluster-key-file", "", "`file` holding the cluster keys (comma- or newline-separated, as --cluster-key; 'dcounter secrets init' makes one); excludes --cluster-key")
}

// keyring returns the configured keys; empty when neither flag is set.
func (kf *keyFlags) keyring() (clusterkey.Keyring, error) {
	switch {
	case kf.key != "" && kf.file != "":
		return clusterkey.Keyring{}, errors.New("--cluster-key and --cluster-key-file exclude each other")
	case kf.file != "":
		r, err := readKeyFile(kf.file)
		if err != nil {
			return r, fmt.Errorf("--cluster-key-file: %w", err)
		}
		return r, nil
	}
	r, err := clusterkey.Parse(kf.key)
	if err != nil {
		return r, fmt.Errorf("--cluster-key: %w", err)
	}
	return r, nil
}
