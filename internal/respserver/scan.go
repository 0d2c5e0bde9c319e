package respserver

import (
	"container/list"
	"math/rand/v2"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/resp"
	"github.com/dcounter/dcounter/internal/service"
)

const (
	// maxCursors bounds the SCAN cursors remembered server-wide; the least
	// recently used is forgotten first (its SCAN then answers "ERR invalid
	// cursor" and the client starts over).
	maxCursors = 10000
	// maxPattern bounds a MATCH pattern: matching costs up to len(key) *
	// len(pattern) per key, and no key is longer than crdt.MaxKeyLen.
	maxPattern = 2 * crdt.MaxKeyLen
	// defaultScanCount is Redis's default COUNT.
	defaultScanCount = 10
)

// cursorTable maps the numbers SCAN hands out to listing positions. The
// listing continues after a key (service.ListPage.Next), but clients parse
// the cursor as a uint64, so the key stays here and the client holds a
// random 63-bit number that says nothing of it.
type cursorTable struct {
	mu  sync.Mutex
	max int
	m   map[uint64]*list.Element
	lru list.List // of *cursorEntry, most recent first
}

type cursorEntry struct {
	id  uint64
	pos string
}

func newCursorTable(max int) *cursorTable {
	return &cursorTable{max: max, m: map[uint64]*list.Element{}}
}

// put remembers pos and returns its cursor (never 0).
func (t *cursorTable) put(pos string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var id uint64
	for id == 0 || t.m[id] != nil {
		id = rand.Uint64() >> 1
	}
	t.m[id] = t.lru.PushFront(&cursorEntry{id: id, pos: pos})
	for t.lru.Len() > t.max {
		e := t.lru.Back()
		t.lru.Remove(e)
		delete(t.m, e.Value.(*cursorEntry).id)
	}
	return id
}

// get returns the position of cursor id. A cursor stays valid after use,
// so that a client may retry a SCAN whose answer it lost.
func (t *cursorTable) get(id uint64) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil {
		return "", false
	}
	t.lru.MoveToFront(e)
	return e.Value.(*cursorEntry).pos, true
}

func (t *cursorTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}

// cmdScan: SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. COUNT is
// the page size asked of the service; MATCH filters the page (so a page may
// come back short, even empty, with a cursor to go on, as Redis's may).
func cmdScan(c *conn, cmd *command, args [][]byte) {
	var (
		pos     string
		pattern []byte
		count   = defaultScanCount
		none    bool
	)
	cur, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		c.refuse(cmd, args, "ERR invalid cursor", service.Invalid(errSyntax))
		return
	}
	if cur != 0 {
		p, ok := c.s.cursors.get(cur)
		if !ok {
			c.refuse(cmd, args, "ERR invalid cursor", service.Invalid(errSyntax))
			return
		}
		pos = p
	}
	for j := 2; j < len(args); j += 2 {
		if j+1 >= len(args) {
			c.refuse(cmd, args, msgSyntax, service.Invalid(errSyntax))
			return
		}
		v := args[j+1]
		switch {
		case equalFold(args[j], "match"):
			if len(v) > maxPattern {
				c.refuse(cmd, args, "ERR MATCH pattern longer than "+strconv.Itoa(maxPattern)+" bytes", service.Invalid(errSyntax))
				return
			}
			pattern = v
		case equalFold(args[j], "count"):
			n, ok := resp.ParseInt(v)
			if !ok {
				c.refuse(cmd, args, msgNotInteger, service.Invalid(errNotInteger))
				return
			}
			if n < 1 {
				c.refuse(cmd, args, msgSyntax, service.Invalid(errSyntax))
				return
			}
			count = int(min(n, service.MaxListLimit))
		case equalFold(args[j], "type"):
			// Every counter reads as a Redis string.
			none = !equalFold(v, "string")
		default:
			c.refuse(cmd, args, msgSyntax, service.Invalid(errSyntax))
			return
		}
	}
	prefix := literalPrefix(pattern)
	if none || len(prefix) > crdt.MaxKeyLen || !utf8.ValidString(prefix) {
		// No key can match.
		c.scanReply(0, nil, nil)
		return
	}
	page, err := c.s.svc.List(c.ctx, service.ListRequest{Prefix: prefix, Cursor: pos, Limit: count})
	if err != nil {
		c.serviceError(err, "")
		return
	}
	var next uint64
	if page.Next != "" {
		next = c.s.cursors.put(page.Next)
	}
	c.scanReply(next, page.Items, pattern)
}

func (c *conn) scanReply(next uint64, items []service.Counter, pattern []byte) {
	c.w.Array(2)
	var tmp [20]byte
	c.w.Bulk(strconv.AppendUint(tmp[:0], next, 10))
	n := 0
	for _, it := range items {
		if pattern == nil || globMatch(pattern, []byte(it.Key), false) {
			n++
		}
	}
	c.w.Array(n)
	for _, it := range items {
		if pattern == nil || globMatch(pattern, []byte(it.Key), false) {
			c.w.BulkString(it.Key)
		}
	}
}

// literalPrefix is the bytes every match of a glob pattern starts with:
// the pattern up to its first wildcard, escapes resolved.
func literalPrefix(p []byte) string {
	var b []byte
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*', '?', '[':
			return string(b)
		case '\\':
			if i+1 < len(p) {
				i++
			}
		}
		b = append(b, p[i])
	}
	return string(b)
}

// globMatch reports whether s matches the glob pattern p with Redis's
// stringmatchlen rules: * any bytes, ? one byte, [abc] [^abc] [a-z] a set
// (a range may be reversed), \x the byte x; nocase folds ASCII letters.
// It backtracks only to the last star, which is exact for these patterns
// (every other element matches exactly one byte) and needs no recursion:
// at most len(p)*len(s) steps.
func globMatch(p, s []byte, nocase bool) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			if p[pi] == '*' {
				for pi < len(p) && p[pi] == '*' {
					pi++
				}
				if pi == len(p) {
					return true
				}
				starP, starS = pi, si
				continue
			}
			if n, ok := matchOne(p[pi:], s[si], nocase); ok {
				pi += n
				si++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchOne matches the pattern element at the start of p (not a star)
// against ch, returning the element's length.
func matchOne(p []byte, ch byte, nocase bool) (int, bool) {
	switch p[0] {
	case '?':
		return 1, true
	case '[':
		return matchClass(p, ch, nocase)
	case '\\':
		if len(p) >= 2 {
			return 2, eqByte(p[1], ch, nocase)
		}
	}
	return 1, eqByte(p[0], ch, nocase)
}

// matchClass matches a [set] at the start of p. As Redis, an unterminated
// set runs to the end of the pattern.
func matchClass(p []byte, ch byte, nocase bool) (int, bool) {
	i := 1
	not := i < len(p) && p[i] == '^'
	if not {
		i++
	}
	match := false
	for i < len(p) {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			if eqByte(p[i], ch, nocase) {
				match = true
			}
		case p[i] == ']':
			return i + 1, match != not
		case i+2 < len(p) && p[i+1] == '-':
			lo, hi := p[i], p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			c := ch
			if nocase {
				lo, hi, c = lower(lo), lower(hi), lower(c)
			}
			if lo <= c && c <= hi {
				match = true
			}
			i += 2
		default:
			if eqByte(p[i], ch, nocase) {
				match = true
			}
		}
		i++
	}
	return len(p), match != not
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

func eqByte(a, b byte, nocase bool) bool {
	if nocase {
		return lower(a) == lower(b)
	}
	return a == b
}
