// Package auth decides who a client of the HTTP API is and what it may do.
//
// Clients prove who they are with a bearer token listed in an auth file
// (--auth-file), one per line:
//
//	# comment
//	TOKEN ROLE [NAME]
//
// ROLE is read (GET routes), write (read, plus increment and decrement) or
// admin (everything, including /nodes and /metrics). NAME, optional, names
// the holder in logs; it is one field of printable characters. A token is
// 16 to 4096 printable ASCII characters without spaces, with at least 8
// distinct characters, so that a typo like "changeme" or "aaaa…" is refused
// rather than guarded against; 'dcounter keygen' prints a good one.
//
// Invariants:
//   - Tokens are kept only as SHA-256 digests, and a lookup compares the
//     presented token's digest with every entry in constant time, without an
//     early exit: the time a lookup takes says nothing about which token, or
//     how much of one, matched.
//   - Errors never contain a token, only line numbers.
//   - A reload that fails keeps the table in force unchanged.
//   - Nothing here reads a clock: tokens do not expire, and a node whose
//     clock is wrong authenticates exactly as one whose clock is right.
//
// A gateway that authenticated a client passes the client's identity on to
// nodes in the Dcounter-Identity-* headers, signed with the cluster key (see
// forwarded.go); a node believes those headers only when the signature
// verifies.
package auth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
)

// Role is what a client may do. Each role includes the ones below it.
type Role uint8

// The roles, weakest first. RoleNone is an anonymous client.
const (
	RoleNone Role = iota
	RoleRead
	RoleWrite
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole parses a role's name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "write":
		return RoleWrite, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q: want read, write or admin", s)
}

// Allows reports whether r includes need.
func (r Role) Allows(need Role) bool { return r >= need }

// How an identity was established.
const (
	ViaToken     = "token"     // a bearer token from the auth file
	ViaForwarded = "forwarded" // a gateway's signed Dcounter-Identity headers
	ViaOpen      = "open"      // no auth file: every client is admin
)

// Identity is an authenticated client.
type Identity struct {
	Role Role
	Name string
	Via  string
}

// Limits on the auth file.
const (
	MinTokenLen      = 16
	MaxTokenLen      = 4096
	MinTokenDistinct = 8
	MaxTokens        = 10000
	MaxNameLen       = 128
	maxFileSize      = 4 << 20
)

// Errors.
var (
	// ErrUnauthenticated: no token, or one that is not in the auth file.
	ErrUnauthenticated = errors.New("auth: a valid bearer token is required (Authorization: Bearer TOKEN)")
	// ErrForbidden: the token's role does not allow the request.
	ErrForbidden = errors.New("auth: forbidden")
	// ErrFile: the auth file cannot be used.
	ErrFile = errors.New("auth: invalid auth file")
)

type entry struct {
	digest [sha256.Size]byte
	id     Identity
}

// Table is a parsed auth file. It is immutable.
type Table struct {
	entries []entry
}

// Len is the number of tokens.
func (t *Table) Len() int { return len(t.entries) }

// constantTimeCompare is subtle.ConstantTimeCompare; a variable so that a
// test can count the comparisons a lookup makes.
var constantTimeCompare = subtle.ConstantTimeCompare

// Lookup returns the identity token belongs to. It compares token's digest
// with every entry, whatever matches, and selects the match without
// branching on secret data.
func (t *Table) Lookup(token string) (Identity, bool) {
	d := sha256.Sum256([]byte(token))
	found, idx := 0, 0
	for i := range t.entries {
		eq := constantTimeCompare(d[:], t.entries[i].digest[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return Identity{}, false
	}
	return t.entries[idx].id, true
}

// Parse reads an auth file. Errors name the line and never the token.
func Parse(r io.Reader) (*Table, error) {
	t := &Table{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(io.LimitReader(r, maxFileSize))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("%w: line %d: want TOKEN ROLE [NAME], got %d fields", ErrFile, line, len(f))
		}
		if err := checkToken(f[0]); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrFile, line, err)
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrFile, line, err)
		}
		id := Identity{Role: role, Via: ViaToken}
		if len(f) == 3 {
			if len(f[2]) > MaxNameLen || !printable(f[2]) {
				return nil, fmt.Errorf("%w: line %d: NAME must be 1-%d printable ASCII characters", ErrFile, line, MaxNameLen)
			}
			id.Name = f[2]
		}
		d := sha256.Sum256([]byte(f[0]))
		if prev, dup := seen[d]; dup {
			return nil, fmt.Errorf("%w: line %d: the same token as line %d", ErrFile, line, prev)
		}
		seen[d] = line
		if len(t.entries) == MaxTokens {
			return nil, fmt.Errorf("%w: line %d: more than %d tokens", ErrFile, line, MaxTokens)
		}
		t.entries = append(t.entries, entry{digest: d, id: id})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: after line %d: %v", ErrFile, line, err)
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%w: no tokens: every client but /health would be refused; add a line TOKEN ROLE [NAME]", ErrFile)
	}
	return t, nil
}

// checkToken refuses tokens too short or too regular to resist guessing.
// The distinct-character count is a crude entropy floor: it catches
// "aaaaaaaaaaaaaaaa" and "abababab…" without judging real random tokens.
func checkToken(tok string) error {
	const hint = "use at least 16 random characters, e.g. from 'dcounter keygen'"
	switch {
	case len(tok) < MinTokenLen:
		return fmt.Errorf("token too short (%d characters): %s", len(tok), hint)
	case len(tok) > MaxTokenLen:
		return fmt.Errorf("token longer than %d characters", MaxTokenLen)
	case !printable(tok):
		return fmt.Errorf("token must be printable ASCII without spaces")
	}
	var set [128]bool
	distinct := 0
	for i := 0; i < len(tok); i++ {
		if !set[tok[i]] {
			set[tok[i]] = true
			distinct++
		}
	}
	if distinct < MinTokenDistinct {
		return fmt.Errorf("token too guessable (only %d distinct characters): %s", distinct, hint)
	}
	return nil
}

func printable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// File is an auth file that can be reloaded while in use. Its methods are
// safe for concurrent use.
type File struct {
	path string
	cur  atomic.Pointer[Table]
	gen  atomic.Uint64
}

// LoadFile reads the auth file at path.
func LoadFile(path string) (*File, error) {
	f := &File{path: path}
	t, err := readTable(path)
	if err != nil {
		return nil, err
	}
	f.cur.Store(t)
	return f, nil
}

func readTable(path string) (*Table, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFile, err)
	}
	defer fh.Close()
	t, err := Parse(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Reload reads the file again. On error the tokens in force stay as they
// were; the caller logs the error.
func (f *File) Reload() (int, error) {
	t, err := readTable(f.path)
	if err != nil {
		return f.cur.Load().Len(), err
	}
	f.cur.Store(t)
	f.gen.Add(1)
	return t.Len(), nil
}

// Generation counts the reloads that took effect: a holder of an identity
// looked up at one generation looks its token up again at the next, so
// that a token removed from the file stops working on connections that
// outlive the reload.
func (f *File) Generation() uint64 { return f.gen.Load() }

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Lookup is Table.Lookup on the tokens in force.
func (f *File) Lookup(token string) (Identity, bool) { return f.cur.Load().Lookup(token) }

// Len is the number of tokens in force.
func (f *File) Len() int { return f.cur.Load().Len() }

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity NewContext stored, if any.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
