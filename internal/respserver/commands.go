package respserver

import (
	"errors"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/resp"
	"github.com/dcounter/dcounter/internal/service"
)

// maxCommandName is the longest command name looked up.
const maxCommandName = 32

// Errors counted for refused requests (the replies carry Redis's texts).
var (
	errArity      = errors.New("respserver: wrong number of arguments")
	errNotInteger = errors.New("respserver: value is not an integer or out of range")
	errSyntax     = errors.New("respserver: syntax error")
	errExpireTime = errors.New("respserver: invalid expire time")
)

// Redis's reply texts.
const (
	msgNotInteger = "ERR value is not an integer or out of range"
	msgSyntax     = "ERR syntax error"
	msgWrongPass  = "WRONGPASS invalid username-password pair or user is disabled."
	msgNoPassword = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	msgBadName    = "ERR Client names cannot contain spaces, newlines or special characters."
)

// command is one entry of the command table, which drives dispatch, arity
// checks, roles (NOPERM) and COMMAND's answers.
type command struct {
	name  string // lowercase; "client|setname" for a subcommand
	arity int    // Redis's: n exactly, -n at least n (the name included)
	flags []string
	// first, last, step locate the keys among the arguments (COMMAND).
	first, last, step int
	acl               []string
	role              auth.Role // the least role; RoleNone: any authenticated client
	op                string    // the metrics op a refusal is counted as ("": none)
	write             bool      // joins the group commit
	multiOK           bool      // may be queued by MULTI
	control           bool      // runs at once even in MULTI (EXEC, DISCARD, MULTI, QUIT, RESET, WATCH)
	noAuth            bool      // runs before authentication
	refused           string    // not empty: always answered with this error
	run               func(c *conn, cmd *command, args [][]byte)
	subs              map[string]*command
	subList           []*command // subs, in order, for COMMAND
}

func (cmd *command) arityOK(n int) bool {
	if cmd.arity >= 0 {
		return n == cmd.arity
	}
	return n >= -cmd.arity
}

// commands is the table; served lists what COMMAND reports (not the refused
// ones), in name order.
var (
	commands map[string]*command
	served   []*command
)

const counterTail = " is not supported: a counter changes only by INCRBY/DECRBY, so that every replica converges to the same value; reset with DEL, start an expiring window with INCRBY then EXPIRE ... NX (or DC.INCRBY ... EX)"

func init() {
	var (
		readFast  = []string{"readonly", "fast"}
		writeFast = []string{"write", "denyoom", "fast"}
		conn      = []string{"@fast", "@connection"}
	)
	key1 := func(c *command) *command { c.first, c.last, c.step = 1, 1, 1; return c }
	keys := func(c *command) *command { c.first, c.last, c.step = 1, -1, 1; return c }
	list := []*command{
		key1(&command{name: "get", arity: 2, flags: readFast, acl: []string{"@read", "@string", "@fast"}, role: auth.RoleRead, op: "get", multiOK: true, run: cmdGet}),
		keys(&command{name: "mget", arity: -2, flags: readFast, acl: []string{"@read", "@string", "@fast"}, role: auth.RoleRead, op: "get", multiOK: true, run: cmdMGet}),
		keys(&command{name: "exists", arity: -2, flags: readFast, acl: []string{"@keyspace", "@read", "@fast"}, role: auth.RoleRead, op: "get", multiOK: true, run: cmdExists}),
		key1(&command{name: "ttl", arity: 2, flags: readFast, acl: []string{"@keyspace", "@read", "@fast"}, role: auth.RoleRead, op: "ttl", multiOK: true, run: cmdTTL}),
		key1(&command{name: "pttl", arity: 2, flags: readFast, acl: []string{"@keyspace", "@read", "@fast"}, role: auth.RoleRead, op: "ttl", multiOK: true, run: cmdTTL}),
		key1(&command{name: "type", arity: 2, flags: readFast, acl: []string{"@keyspace", "@read", "@fast"}, role: auth.RoleRead, op: "get", run: cmdType}),
		{name: "scan", arity: -2, flags: []string{"readonly"}, acl: []string{"@keyspace", "@read", "@slow"}, role: auth.RoleRead, op: "list", run: cmdScan},
		{name: "dbsize", arity: 1, flags: readFast, acl: []string{"@keyspace", "@read", "@fast"}, role: auth.RoleRead, run: cmdDBSize},

		key1(&command{name: "incr", arity: 2, flags: writeFast, acl: []string{"@write", "@string", "@fast"}, role: auth.RoleWrite, op: "inc", write: true, multiOK: true, run: cmdIncr}),
		key1(&command{name: "decr", arity: 2, flags: writeFast, acl: []string{"@write", "@string", "@fast"}, role: auth.RoleWrite, op: "dec", write: true, multiOK: true, run: cmdIncr}),
		key1(&command{name: "incrby", arity: 3, flags: writeFast, acl: []string{"@write", "@string", "@fast"}, role: auth.RoleWrite, op: "inc", write: true, multiOK: true, run: cmdIncrBy}),
		key1(&command{name: "decrby", arity: 3, flags: writeFast, acl: []string{"@write", "@string", "@fast"}, role: auth.RoleWrite, op: "dec", write: true, multiOK: true, run: cmdIncrBy}),
		key1(&command{name: "dc.incrby", arity: -3, flags: writeFast, acl: []string{"@write", "@string", "@fast"}, role: auth.RoleWrite, op: "inc", write: true, multiOK: true, run: cmdDCIncrBy}),
		keys(&command{name: "del", arity: -2, flags: []string{"write"}, acl: []string{"@keyspace", "@write", "@slow"}, role: auth.RoleWrite, op: "del", write: true, multiOK: true, run: cmdDel}),
		keys(&command{name: "unlink", arity: -2, flags: []string{"write", "fast"}, acl: []string{"@keyspace", "@write", "@fast"}, role: auth.RoleWrite, op: "del", write: true, multiOK: true, run: cmdDel}),
		key1(&command{name: "getdel", arity: 2, flags: []string{"write", "fast"}, acl: []string{"@write", "@string", "@fast"}, role: auth.RoleWrite, op: "del", write: true, multiOK: true, run: cmdGetDel}),
		key1(&command{name: "expire", arity: -3, flags: []string{"write", "fast"}, acl: []string{"@keyspace", "@write", "@fast"}, role: auth.RoleWrite, op: "ttl", write: true, multiOK: true, run: cmdExpire}),
		key1(&command{name: "pexpire", arity: -3, flags: []string{"write", "fast"}, acl: []string{"@keyspace", "@write", "@fast"}, role: auth.RoleWrite, op: "ttl", write: true, multiOK: true, run: cmdExpire}),
		key1(&command{name: "persist", arity: 2, flags: []string{"write", "fast"}, acl: []string{"@keyspace", "@write", "@fast"}, role: auth.RoleWrite, op: "ttl", write: true, multiOK: true, run: cmdPersist}),

		{name: "ping", arity: -1, flags: []string{"fast"}, acl: conn, multiOK: true, run: cmdPing},
		{name: "echo", arity: 2, flags: []string{"fast"}, acl: conn, multiOK: true, run: cmdEcho},
		{name: "quit", arity: -1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"}, acl: conn, control: true, noAuth: true, run: cmdQuit},
		{name: "reset", arity: 1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"}, acl: conn, control: true, noAuth: true, run: cmdReset},
		{name: "select", arity: 2, flags: []string{"loading", "stale", "fast"}, acl: conn, run: cmdSelect},
		{name: "hello", arity: -1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"}, acl: conn, noAuth: true, run: cmdHello},
		{name: "auth", arity: -2, flags: []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"}, acl: conn, noAuth: true, run: cmdAuth},
		{name: "info", arity: -1, flags: []string{"loading", "stale"}, acl: []string{"@slow", "@dangerous"}, run: cmdInfo},
		{name: "multi", arity: 1, flags: []string{"noscript", "loading", "stale", "fast", "allow_busy"}, acl: []string{"@fast", "@transaction"}, control: true, run: cmdMulti},
		{name: "exec", arity: 1, flags: []string{"noscript", "loading", "stale", "skip_slowlog"}, acl: []string{"@slow", "@transaction"}, control: true, run: cmdExec},
		{name: "discard", arity: 1, flags: []string{"noscript", "loading", "stale", "fast", "allow_busy"}, acl: []string{"@fast", "@transaction"}, control: true, run: cmdDiscard},
		container("client", []*command{
			{name: "setname", arity: 3, run: cmdClientSetName},
			{name: "getname", arity: 2, run: cmdClientGetName},
			{name: "id", arity: 2, run: cmdClientID},
			{name: "setinfo", arity: 4, run: cmdClientSetInfo},
			{name: "info", arity: 2, run: cmdClientInfo},
			{name: "help", arity: 2, run: cmdHelp},
		}),
		container("command", []*command{
			{name: "count", arity: 2, run: cmdCommandCount},
			{name: "info", arity: -2, run: cmdCommandInfo},
			{name: "docs", arity: -2, run: cmdCommandDocs},
			{name: "list", arity: -2, run: cmdCommandList},
			{name: "help", arity: 2, run: cmdHelp},
		}),
		container("config", []*command{
			{name: "get", arity: -3, run: cmdConfigGet},
			{name: "set", arity: -4, run: cmdConfigUnsupported},
			{name: "resetstat", arity: 2, run: cmdConfigUnsupported},
			{name: "rewrite", arity: 2, run: cmdConfigUnsupported},
			{name: "help", arity: 2, run: cmdHelp},
		}),
	}
	// COMMAND alone lists the commands.
	for _, c := range list {
		if c.name == "command" {
			c.run, c.arity = cmdCommand, -1 // as Redis's COMMAND: no subcommand needed
		}
	}
	refusals := map[string]string{
		"watch":       "ERR WATCH is not supported: every replica takes writes, so no node can tell that a watched key is unchanged; use MULTI/EXEC (applied in order and made durable together) or DC.INCRBY",
		"unwatch":     "ERR UNWATCH is not supported: see WATCH",
		"incrbyfloat": "ERR INCRBYFLOAT is not supported: counters are 64-bit integers",
		"keys":        "ERR KEYS is not supported: use SCAN, which pages through the keyspace without holding up the node",
		"flushdb":     "ERR FLUSHDB is not supported: delete keys one by one with DEL (SCAN finds them)",
		"flushall":    "ERR FLUSHALL is not supported: delete keys one by one with DEL (SCAN finds them)",
		"swapdb":      "ERR SWAPDB is not supported: there is one database",
		"move":        "ERR MOVE is not supported: there is one database",
	}
	for _, n := range []string{"set", "setnx", "setex", "psetex", "getset", "mset", "msetnx", "append", "setrange", "getex"} {
		refusals[n] = "ERR " + strings.ToUpper(n) + counterTail
	}
	for _, n := range []string{"rename", "renamenx", "copy"} {
		refusals[n] = "ERR " + strings.ToUpper(n) + " is not supported: a counter's history belongs to its key on every replica, so it cannot be moved; read it and INCRBY the new key"
	}
	commands = map[string]*command{}
	for _, c := range list {
		commands[c.name] = c
		served = append(served, c)
	}
	for n, why := range refusals {
		commands[n] = &command{name: n, arity: -1, refused: why}
	}
	sort.Slice(served, func(i, j int) bool { return served[i].name < served[j].name })
}

// container makes a command with subcommands (CLIENT, COMMAND, CONFIG):
// they need only authentication.
func container(name string, subs []*command) *command {
	c := &command{name: name, arity: -2, flags: []string{"loading", "stale"}, acl: []string{"@slow"}, subs: map[string]*command{}}
	for _, s := range subs {
		s.name = name + "|" + s.name
		s.flags, s.acl = []string{"loading", "stale"}, []string{"@slow"}
		c.subs[strings.TrimPrefix(s.name, name+"|")] = s
		c.subList = append(c.subList, s)
	}
	return c
}

// equalFold reports whether b is s, ASCII case-insensitively (s lowercase).
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		ch := b[i]
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != s[i] {
			return false
		}
	}
	return true
}

// trunc returns b's first n bytes as a string, as Redis's "%.128s".
func trunc(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

func upper(s string) string { return strings.ToUpper(s) }

// unknownCommand is Redis 7's error for a command it does not know: the
// name (at most 128 bytes) and the arguments, each quoted, until 128 bytes
// of them are written.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(trunc(args[0], 128))
	b.WriteString("', with args beginning with: ")
	n := 0
	for _, a := range args[1:] {
		if n >= 128 {
			break
		}
		s := trunc(a, 128-n)
		b.WriteString("'")
		b.WriteString(s)
		b.WriteString("' ")
		n += len(s) + 3
	}
	return b.String()
}

// --- counters ---

func cmdIncr(c *conn, cmd *command, args [][]byte) {
	d := int64(1)
	if cmd.name == "decr" {
		d = -1
	}
	c.addWrite(replyValue, service.Write{Op: service.OpAdd, Key: c.key(args[1]), Delta: d})
}

func cmdIncrBy(c *conn, cmd *command, args [][]byte) {
	n, ok := resp.ParseInt(args[2])
	if !ok {
		c.refuse(cmd, args, msgNotInteger, service.Invalid(errNotInteger))
		return
	}
	if cmd.name == "decrby" {
		if n == math.MinInt64 {
			c.refuse(cmd, args, "ERR decrement would overflow", service.Invalid(errNotInteger))
			return
		}
		n = -n
	}
	if n == 0 {
		// The service refuses a zero change; Redis answers the value. A
		// key that is not live stays so (it reads 0).
		c.runGroup()
		v, err := c.s.svc.Get(c.ctx, c.key(args[1]))
		if err != nil {
			c.serviceError(err, string(args[1]))
			return
		}
		c.w.Int(v.Value)
		return
	}
	c.addWrite(replyValue, service.Write{Op: service.OpAdd, Key: c.key(args[1]), Delta: n})
}

// cmdDCIncrBy: DC.INCRBY key amount [IDEMPOTENCY token] [EX s | PX ms] [ALWAYS].
func cmdDCIncrBy(c *conn, cmd *command, args [][]byte) {
	n, ok := resp.ParseInt(args[2])
	if !ok {
		c.refuse(cmd, args, msgNotInteger, service.Invalid(errNotInteger))
		return
	}
	if n == 0 {
		c.refuse(cmd, args, "ERR DC.INCRBY amount must not be 0", service.Invalid(errNotInteger))
		return
	}
	var (
		opts             service.WriteOptions
		haveIdem, always bool
	)
	for j := 3; j < len(args); j++ {
		more := j+1 < len(args)
		switch {
		case equalFold(args[j], "idempotency") && more && !haveIdem:
			j++
			if err := checkIdem(args[j]); err != nil {
				c.refuse(cmd, args, service.RESPError(err), err)
				return
			}
			opts.Idem, haveIdem = string(args[j]), true
		case (equalFold(args[j], "ex") || equalFold(args[j], "px")) && more && opts.TTL == 0:
			unit := time.Second
			if args[j][0]|0x20 == 'p' {
				unit = time.Millisecond
			}
			j++
			t, ok := resp.ParseInt(args[j])
			if !ok {
				c.refuse(cmd, args, msgNotInteger, service.Invalid(errNotInteger))
				return
			}
			if t <= 0 || t > int64(service.MaxTTL/unit) {
				c.refuse(cmd, args, "ERR invalid expire time in 'dc.incrby' command", service.Invalid(errExpireTime))
				return
			}
			opts.TTL = time.Duration(t) * unit
		case equalFold(args[j], "always") && !always:
			always = true
		default:
			c.refuse(cmd, args, msgSyntax, service.Invalid(errSyntax))
			return
		}
	}
	if always && opts.TTL == 0 {
		c.refuse(cmd, args, "ERR DC.INCRBY's ALWAYS needs EX or PX", service.Invalid(errSyntax))
		return
	}
	opts.TTLAlways = always
	c.addWrite(replyValue, service.Write{Op: service.OpAdd, Key: c.key(args[1]), Delta: n, Opts: opts})
}

// checkIdem refuses a token the service would: 1-255 printable ASCII.
func checkIdem(b []byte) error {
	if len(b) == 0 || len(b) > service.MaxIdempotencyKey {
		return service.ErrBadIdempotency
	}
	for _, ch := range b {
		if ch < 0x21 || ch > 0x7e {
			return service.ErrBadIdempotency
		}
	}
	return nil
}

// validKey is crdt.ValidKey on an argument.
func validKey(k []byte) error { return crdt.ValidKey(string(k)) }

// checkKeys validates every key of a multi-key command before any runs,
// so that it is refused whole rather than applied in part.
func (c *conn) checkKeys(cmd *command, args [][]byte) bool {
	for _, k := range args[1:] {
		if err := validKey(k); err != nil {
			c.refuse(cmd, args, service.RESPError(err), err)
			return false
		}
	}
	return true
}

func cmdDel(c *conn, cmd *command, args [][]byte) {
	if !c.checkKeys(cmd, args) {
		return
	}
	c.addWrites(replyCount, len(args)-1)
	for _, k := range args[1:] {
		c.writes = append(c.writes, service.Write{Op: service.OpDelete, Key: c.key(k)})
	}
}

func cmdGetDel(c *conn, cmd *command, args [][]byte) {
	c.addWrite(replyPrior, service.Write{Op: service.OpDelete, Key: c.key(args[1])})
}

func cmdPersist(c *conn, cmd *command, args [][]byte) {
	c.addWrite(replyApplied, service.Write{Op: service.OpPersist, Key: c.key(args[1])})
}

// cmdExpire: EXPIRE key seconds [NX|XX|GT|LT], PEXPIRE key ms [...].
func cmdExpire(c *conn, cmd *command, args [][]byte) {
	unit := time.Second
	if cmd.name == "pexpire" {
		unit = time.Millisecond
	}
	var nx, xx, gt, lt bool
	for _, o := range args[3:] {
		switch {
		case equalFold(o, "nx"):
			nx = true
		case equalFold(o, "xx"):
			xx = true
		case equalFold(o, "gt"):
			gt = true
		case equalFold(o, "lt"):
			lt = true
		default:
			c.refuse(cmd, args, "ERR Unsupported option "+string(o), service.Invalid(errSyntax))
			return
		}
	}
	switch {
	case nx && (xx || gt || lt):
		c.refuse(cmd, args, "ERR NX and XX, GT or LT options at the same time are not compatible", service.Invalid(errSyntax))
		return
	case gt && lt:
		c.refuse(cmd, args, "ERR GT and LT options at the same time are not compatible", service.Invalid(errSyntax))
		return
	case xx && lt:
		// The service's conditions are single; LT alone also applies to
		// a key without expiry, so XX LT cannot be honoured exactly.
		c.refuse(cmd, args, "ERR XX and LT options together are not supported by dcounter: use LT alone, or XX", service.Invalid(errSyntax))
		return
	}
	cond := service.ExpireAlways
	switch {
	case nx:
		cond = service.ExpireNX
	case gt: // XX GT is GT: a key without expiry never takes GT
		cond = service.ExpireGT
	case lt:
		cond = service.ExpireLT
	case xx:
		cond = service.ExpireXX
	}
	n, ok := resp.ParseInt(args[2])
	if !ok {
		c.refuse(cmd, args, msgNotInteger, service.Invalid(errNotInteger))
		return
	}
	// Beyond MaxTTL, or (as Redis) a negative number of seconds whose
	// milliseconds overflow.
	if n > int64(service.MaxTTL/unit) || (unit == time.Second && n < math.MinInt64/1000) {
		c.refuse(cmd, args, "ERR invalid expire time in '"+cmd.name+"' command", service.Invalid(errExpireTime))
		return
	}
	ttl := time.Duration(0) // a deadline already past: the service deletes
	if n > 0 {
		ttl = time.Duration(n) * unit
	}
	c.addWrite(replyApplied, service.Write{Op: service.OpExpire, Key: c.key(args[1]), TTL: ttl, Cond: cond})
}

func cmdGet(c *conn, cmd *command, args [][]byte) {
	v, err := c.s.svc.Get(c.ctx, c.key(args[1]))
	switch {
	case err != nil:
		c.serviceError(err, string(args[1]))
	case v.Live:
		c.w.BulkInt(v.Value)
	default:
		c.w.Null()
	}
}

func cmdMGet(c *conn, cmd *command, args [][]byte) {
	if !c.checkKeys(cmd, args) {
		return
	}
	// The values are read before any is written, so that an error can
	// still be the whole answer.
	vals := make([]service.Counter, len(args)-1)
	for i, k := range args[1:] {
		v, err := c.s.svc.Get(c.ctx, c.key(k))
		if err != nil {
			c.serviceError(err, string(k))
			return
		}
		vals[i] = v
	}
	c.w.Array(len(vals))
	for _, v := range vals {
		if v.Live {
			c.w.BulkInt(v.Value)
		} else {
			c.w.Null()
		}
	}
}

func cmdExists(c *conn, cmd *command, args [][]byte) {
	if !c.checkKeys(cmd, args) {
		return
	}
	n := int64(0)
	for _, k := range args[1:] {
		v, err := c.s.svc.Get(c.ctx, c.key(k))
		if err != nil {
			c.serviceError(err, string(k))
			return
		}
		if v.Live {
			n++
		}
	}
	c.w.Int(n)
}

func cmdType(c *conn, cmd *command, args [][]byte) {
	v, err := c.s.svc.Get(c.ctx, c.key(args[1]))
	switch {
	case err != nil:
		c.serviceError(err, string(args[1]))
	case v.Live:
		c.w.SimpleString("string")
	default:
		c.w.SimpleString("none")
	}
}

func cmdTTL(c *conn, cmd *command, args [][]byte) {
	v, err := c.s.svc.Get(c.ctx, c.key(args[1]))
	switch {
	case err != nil:
		c.serviceError(err, string(args[1]))
	case !v.Live:
		c.w.Int(-2)
	case v.TTL <= 0:
		c.w.Int(-1)
	default:
		// Milliseconds rounded up: a key with time left never reads as
		// persistent; seconds rounded as Redis's TTL does.
		ms := int64((v.TTL + time.Millisecond - 1) / time.Millisecond)
		if cmd.name == "pttl" {
			c.w.Int(ms)
		} else {
			c.w.Int((ms + 500) / 1000)
		}
	}
}

func cmdDBSize(c *conn, cmd *command, args [][]byte) {
	_, h := c.s.svc.Health(c.ctx)
	c.w.Int(int64(h.LiveKeys))
}

// --- connection ---

func cmdPing(c *conn, cmd *command, args [][]byte) {
	switch len(args) {
	case 1:
		c.w.SimpleString("PONG")
	case 2:
		c.w.Bulk(args[1])
	default:
		c.fail("ERR wrong number of arguments for 'ping' command")
	}
}

func cmdEcho(c *conn, cmd *command, args [][]byte) { c.w.Bulk(args[1]) }

func cmdQuit(c *conn, cmd *command, args [][]byte) {
	c.w.SimpleString("OK")
	c.quit = true
}

func cmdSelect(c *conn, cmd *command, args [][]byte) {
	n, ok := resp.ParseInt(args[1])
	switch {
	case !ok || n != int64(int32(n)):
		c.fail("ERR invalid DB index")
	case n != 0:
		c.fail("ERR DB index is out of range")
	default:
		c.w.SimpleString("OK")
	}
}

func cmdReset(c *conn, cmd *command, args [][]byte) {
	c.endMulti()
	c.name, c.lib = "", [2]string{}
	c.w.SetProtocol(2)
	if c.s.cfg.Auth != nil {
		if c.authed {
			// A new AuthTimeout from now; a connection that never
			// authenticated keeps its own, else RESET would keep it open.
			c.authStart = time.Now()
		}
		c.authed, c.ident, c.token = false, auth.Identity{}, ""
		c.r.SetLimits(resp.UnauthenticatedLimits)
	}
	c.w.SimpleString("RESET")
}

func cmdAuth(c *conn, cmd *command, args [][]byte) {
	if len(args) > 3 {
		c.fail(msgSyntax)
		return
	}
	if c.s.cfg.Auth == nil && len(args) == 2 {
		c.fail(msgNoPassword)
		return
	}
	user, pass := []byte("default"), args[1]
	if len(args) == 3 {
		user, pass = args[1], args[2]
	}
	if c.authenticate(user, pass) {
		c.w.SimpleString("OK")
	}
}

// authenticate checks a username and token, answering WRONGPASS on
// failure. Without an auth table only "default" is accepted, as Redis's
// nopass default user. A failure says nothing of why: not whether the token
// exists, nor whether the name was the wrong one.
func (c *conn) authenticate(user, pass []byte) bool {
	if c.s.cfg.Auth == nil {
		if string(user) == "default" {
			return true
		}
		c.fail(msgWrongPass)
		return false
	}
	id, ok := c.s.cfg.Auth.Lookup(string(pass))
	if !ok || !(string(user) == "default" || (id.Name != "" && string(user) == id.Name)) {
		c.s.log.Debug("resp: AUTH failed", "remote", c.nc.RemoteAddr().String(), "client_id", c.id)
		c.fail(msgWrongPass)
		if c.authFailures++; c.authFailures >= maxAuthFailures {
			c.quit = true
		}
		return false
	}
	c.authed, c.ident = true, id
	c.token = string(pass)
	if g, ok := c.s.cfg.Auth.(Generationer); ok {
		c.authGen = g.Generation()
	}
	c.r.SetLimits(c.s.cfg.Limits)
	return true
}

// msgRevoked closes a connection whose token was removed from the auth
// file: as Redis disconnects the clients of a deleted ACL user.
const msgRevoked = "ERR this connection's token was removed from the auth file; connection closed"

// tokenStillValid looks the connection's token up again after the tokens
// changed, taking the role it has now; a token no longer there ends the
// connection, answered with msgRevoked.
func (c *conn) tokenStillValid() bool {
	g, ok := c.s.cfg.Auth.(Generationer)
	if !ok || c.token == "" {
		return true
	}
	gen := g.Generation()
	if gen == c.authGen {
		return true
	}
	id, found := c.s.cfg.Auth.Lookup(c.token)
	if !found {
		c.fail(msgRevoked)
		c.authed, c.ident, c.token, c.quit = false, auth.Identity{}, "", true
		return false
	}
	c.ident, c.authGen = id, gen
	return true
}

// validName reports whether a client name (or library name) fits on a
// CLIENT LIST line: printable ASCII without spaces, as Redis requires.
func validName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

// --- transactions ---

func cmdMulti(c *conn, cmd *command, args [][]byte) {
	if c.multi {
		c.fail("ERR MULTI calls can not be nested")
		return
	}
	c.endMulti()
	c.multi = true
	c.w.SimpleString("OK")
}

func cmdDiscard(c *conn, cmd *command, args [][]byte) {
	if !c.multi {
		c.fail("ERR DISCARD without MULTI")
		return
	}
	c.endMulti()
	c.w.SimpleString("OK")
}

// cmdExec runs the queued commands in order: each run of consecutive
// writes is one service.Writes group (durable together, nothing else
// between them), and a read sees the writes before it, durable.
func cmdExec(c *conn, cmd *command, args [][]byte) {
	if !c.multi {
		c.fail("ERR EXEC without MULTI")
		return
	}
	q, doomed := c.queue, c.multiErr
	c.endMulti()
	if doomed {
		c.fail("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	c.w.Array(len(q))
	c.inExec = true
	for _, e := range q {
		c.call(e.cmd, e.args)
	}
	c.runGroup()
	c.inExec = false
}
