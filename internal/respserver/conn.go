package respserver

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/resp"
	"github.com/dcounter/dcounter/internal/service"
)

const (
	// groupCap is the most writes gathered into one service.Writes call
	// from a pipeline (a MULTI/EXEC's run of writes is never split).
	groupCap = 1024
	// flushAbove: replies are sent when no more input is buffered, or
	// once this many bytes wait (below resp's buffer-shrink threshold, so
	// the writer's buffer is reused).
	flushAbove = 16 << 10
	// keyCacheSize: the last keys a connection used are kept as strings,
	// so that a pipeline hitting the same keys allocates none.
	keyCacheSize = 8
	// maxQueued bounds the commands one MULTI may queue; their bytes are
	// bounded too (queuedLimit).
	maxQueued = 1 << 16
	// argOverhead is what a queued argument costs beyond its bytes (its
	// slice header), so that a MULTI of empty arguments is bounded too.
	argOverhead = 24
	// maxAuthFailures: a connection is closed after so many failed AUTHs,
	// so that guessing tokens costs a connection per few guesses.
	maxAuthFailures = 10
)

var (
	errClosing = errors.New("respserver: server shutting down")
	// errDraining is how commands refused by Drain are recorded.
	errDraining = service.Unavailable(errors.New("respserver: draining before shutdown"))
	// aLongTimeAgo is a deadline in the past: it wakes a blocked Read.
	aLongTimeAgo = time.Unix(1, 0)
)

// replyKind says how a queued write's results are answered.
type replyKind uint8

const (
	replyValue   replyKind = iota // the counter's value after the write (INCR…)
	replyCount                    // how many writes Applied (DEL, UNLINK)
	replyApplied                  // 1 if Applied, else 0 (EXPIRE, PERSIST)
	replyPrior                    // the value before, or null (GETDEL)
)

// pending is one command of the group being gathered: its n writes follow
// those of the commands before it.
type pending struct {
	kind replyKind
	n    int
}

// queued is a command queued by MULTI; args are copies.
type queued struct {
	cmd  *command
	args [][]byte
}

type conn struct {
	s   *Server
	nc  net.Conn
	id  int64
	r   *resp.Reader
	w   *resp.Writer
	ctx context.Context

	connected time.Time // monotonic, for CLIENT INFO's age
	authStart time.Time // AuthTimeout runs from here (connection, RESET)

	// dlMu orders this connection's deadline changes with Shutdown's wake,
	// so that a deadline set while the server closes cannot undo the wake.
	dlMu        sync.Mutex
	hasDeadline bool
	// hasWriteDeadline: flush set one (only the serving goroutine writes).
	hasWriteDeadline bool

	authed bool
	ident  auth.Identity
	// token is what the connection authenticated with, looked up again
	// when the tokens change (authGen is the generation it was checked at).
	token        string
	authGen      uint64
	authFailures int
	name         string
	lib          [2]string // CLIENT SETINFO lib-name, lib-ver

	// The group commit: writes gathered from the pipeline (or an EXEC),
	// run with one service.Writes call.
	writes  []service.Write
	results []service.WriteResult
	pend    []pending
	inExec  bool

	multi       bool
	multiErr    bool // a command failed to queue: EXEC aborts
	queue       []queued
	queuedBytes int // held by queue (queuedSize)

	keys    [keyCacheSize]string
	keyNext int
	lower   [maxCommandName]byte

	quit bool // close once the replies are out
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s:         s,
		nc:        nc,
		id:        s.nextID.Add(1),
		ctx:       s.ctx,
		connected: time.Now(),
		authStart: time.Now(),
		writes:    make([]service.Write, 0, 16),
		results:   make([]service.WriteResult, 16),
	}
	lim := s.cfg.Limits
	if s.cfg.Auth == nil {
		c.authed, c.ident = true, auth.Identity{Role: auth.RoleAdmin, Via: auth.ViaOpen}
	} else {
		lim = resp.UnauthenticatedLimits
	}
	c.r = resp.NewReader(connReader{c}, lim)
	c.w = resp.NewWriter(nc)
	return c
}

// connReader is what the resp.Reader reads from: the connection, with the
// pending work done first (see beforeRead).
type connReader struct{ c *conn }

func (r connReader) Read(p []byte) (int, error) {
	if err := r.c.beforeRead(); err != nil {
		return 0, err
	}
	return r.c.nc.Read(p)
}

// beforeRead runs when the Reader needs more bytes, which is exactly when
// the pipeline's buffered commands are exhausted: the gathered writes run
// and every reply is sent before the connection may block. It also sets
// the read deadline, and stops reading once the server is closing.
func (c *conn) beforeRead() error {
	c.runGroup()
	if err := c.flush(); err != nil {
		return err
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if c.s.closing.Load() {
		return errClosing
	}
	dl := c.readDeadline()
	if !dl.IsZero() || c.hasDeadline {
		c.hasDeadline = !dl.IsZero()
		return c.nc.SetReadDeadline(dl)
	}
	return nil
}

// readDeadline is when the next read gives up: the idle timeout, and for
// an unauthenticated connection AuthTimeout after it connected.
func (c *conn) readDeadline() time.Time {
	var dl time.Time
	if t := c.s.cfg.IdleTimeout; t > 0 {
		dl = time.Now().Add(t)
	}
	if !c.authed {
		if a := c.authStart.Add(c.s.authTO); dl.IsZero() || a.Before(dl) {
			dl = a
		}
	}
	return dl
}

// wake makes a Read blocked on the connection return (Shutdown).
func (c *conn) wake() {
	c.dlMu.Lock()
	c.nc.SetReadDeadline(aLongTimeAgo)
	c.hasDeadline = true
	c.dlMu.Unlock()
}

func (c *conn) flush() error {
	if c.w.Buffered() == 0 {
		return nil
	}
	// A client that stops reading its replies is idle too, and one that
	// has not authenticated is held to AuthTimeout while it does not read
	// as while it does not write: else it could keep its connection (one
	// of MaxClients) forever by sending commands and reading nothing.
	dl := c.readDeadline()
	if !dl.IsZero() || c.hasWriteDeadline {
		c.hasWriteDeadline = !dl.IsZero()
		c.nc.SetWriteDeadline(dl)
	}
	return c.w.Flush()
}

func (c *conn) serve() {
	defer c.nc.Close()
	defer func() {
		// A bug must cost one connection, not the node (as net/http).
		if r := recover(); r != nil {
			c.s.log.Error("resp: panic serving a connection", "remote", c.nc.RemoteAddr().String(), "panic", r, "stack", string(debug.Stack()))
		}
	}()
	if tc, ok := c.nc.(*tls.Conn); ok && !c.handshake(tc) {
		return
	}
	for !c.quit && !c.s.closing.Load() {
		args, err := c.r.ReadCommand()
		if err != nil {
			c.runGroup()
			var pe *resp.ProtocolError
			switch {
			case errors.As(err, &pe):
				c.w.Error(pe.Error())
				c.s.log.Debug("resp: protocol error", "remote", c.nc.RemoteAddr().String(), "err", err)
			case errors.Is(err, io.EOF), errors.Is(err, errClosing), errors.Is(err, net.ErrClosed):
			default:
				c.s.log.Debug("resp: connection closed", "remote", c.nc.RemoteAddr().String(), "err", err)
			}
			break
		}
		c.dispatch(args)
		if c.w.Buffered() > flushAbove {
			if c.flush() != nil {
				return
			}
		}
	}
	c.runGroup()
	c.flush()
}

func (c *conn) handshake(tc *tls.Conn) bool {
	c.dlMu.Lock()
	if c.s.closing.Load() {
		c.dlMu.Unlock()
		return false
	}
	tc.SetDeadline(time.Now().Add(HandshakeTimeout))
	c.dlMu.Unlock()
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.s.log.Debug("resp: TLS handshake failed", "remote", tc.RemoteAddr().String(), "err", err)
		return false
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if c.s.closing.Load() {
		return false
	}
	tc.SetDeadline(time.Time{})
	return true
}

// key returns b as a string, reusing the string of a recent key.
func (c *conn) key(b []byte) string {
	for i := range c.keys {
		if c.keys[i] == string(b) {
			return c.keys[i]
		}
	}
	k := string(b)
	c.keys[c.keyNext] = k
	c.keyNext = (c.keyNext + 1) % keyCacheSize
	return k
}

// addWrites makes room for n more writes of one command in the group:
// in a pipeline a full group runs first.
func (c *conn) addWrites(kind replyKind, n int) {
	if !c.inExec && len(c.writes) > 0 && len(c.writes)+n > groupCap {
		c.runGroup()
	}
	c.pend = append(c.pend, pending{kind: kind, n: n})
}

// addWrite queues the one write of a command.
func (c *conn) addWrite(kind replyKind, w service.Write) {
	c.addWrites(kind, 1)
	c.writes = append(c.writes, w)
}

// runGroup runs the gathered writes with one service.Writes call (one
// durable flush) and writes their replies in order.
func (c *conn) runGroup() {
	if len(c.pend) == 0 {
		return
	}
	n := len(c.writes)
	if cap(c.results) < n {
		c.results = make([]service.WriteResult, n)
	}
	out := c.results[:n]
	c.s.svc.Writes(c.ctx, c.writes, out)
	i := 0
	for _, p := range c.pend {
		c.replyWrites(p.kind, c.writes[i:i+p.n], out[i:i+p.n])
		i += p.n
	}
	clear(out) // drop the references to errors and keys
	if cap(c.writes) > 4*groupCap {
		// One huge DEL or EXEC should not pin its arrays.
		c.writes, c.results, c.pend = make([]service.Write, 0, 16), make([]service.WriteResult, 16), nil
		return
	}
	clear(c.writes)
	c.writes, c.pend = c.writes[:0], c.pend[:0]
}

func (c *conn) replyWrites(kind replyKind, ws []service.Write, rs []service.WriteResult) {
	count := int64(0)
	for i := range rs {
		err := rs[i].Err
		if err == nil {
			if rs[i].Applied {
				count++
			}
			continue
		}
		if service.ClassOf(err) == service.ClassNotFound && (kind == replyApplied || kind == replyPrior) {
			continue // not live: answered 0 or null, as Redis
		}
		c.serviceError(err, ws[i].Key)
		return
	}
	switch kind {
	case replyValue:
		c.w.Int(rs[0].Counter.Value)
	case replyCount, replyApplied:
		c.w.Int(count)
	case replyPrior:
		if rs[0].Err == nil && rs[0].Applied {
			c.w.BulkInt(rs[0].Prior)
		} else {
			c.w.Null()
		}
	}
}

// serviceError answers err through the one error table, logging the
// failures that are the node's rather than the request's.
func (c *conn) serviceError(err error, key string) {
	if service.ClassOf(err) == service.ClassInternal {
		c.s.log.Error("resp: command failed", "key", key, "err", err)
	}
	c.w.Error(service.RESPError(err))
}

// record counts a request refused before it reached the service.
func (c *conn) record(cmd *command, args [][]byte, err error) {
	if c.s.rec == nil || cmd == nil || cmd.op == "" {
		return
	}
	key := ""
	if len(args) > 1 && cmd.first > 0 {
		key = string(args[1])
	}
	c.s.rec.Record(cmd.op, key, err)
}

// fail answers a command's own error, after the replies of the writes
// gathered before it.
func (c *conn) fail(msg string) {
	c.runGroup()
	c.w.Error(msg)
}

// refuse answers a request refused before the service saw it, counting it.
func (c *conn) refuse(cmd *command, args [][]byte, msg string, err error) {
	c.runGroup()
	c.record(cmd, args, err)
	c.w.Error(msg)
}

// dispatch runs (or queues, in MULTI) one command.
func (c *conn) dispatch(args [][]byte) {
	if c.authed && c.token != "" && !c.tokenStillValid() {
		return
	}
	cmd := c.lookup(args[0])
	if c.s.draining.Load() && (cmd == nil || cmd.name != "quit") {
		c.s.drained.Add(1)
		c.queueError(DrainingReply) // in MULTI, EXEC then fails too
		c.record(cmd, args, errDraining)
		return
	}
	if cmd != nil && cmd.subs != nil && len(args) >= 2 {
		sub := cmd.subs[string(c.lowerName(args[1]))]
		if sub == nil {
			if !c.authOK(cmd) {
				c.rejectNoAuth(cmd, args)
				return
			}
			c.queueError("ERR unknown subcommand '" + trunc(args[1], 128) + "'. Try " + upper(cmd.name) + " HELP.")
			return
		}
		cmd = sub
	}
	if cmd == nil {
		if !c.authOK(nil) {
			c.rejectNoAuth(nil, args)
			return
		}
		c.queueError(unknownCommand(args))
		return
	}
	if !c.authOK(cmd) {
		c.rejectNoAuth(cmd, args)
		return
	}
	if !cmd.arityOK(len(args)) {
		c.record(cmd, args, service.Invalid(errArity))
		c.queueError("ERR wrong number of arguments for '" + cmd.name + "' command")
		return
	}
	if cmd.refused != "" {
		c.queueError(cmd.refused)
		return
	}
	if !c.ident.Role.Allows(cmd.role) {
		c.record(cmd, args, auth.ErrForbidden)
		c.queueError("NOPERM User " + c.userName() + " has no permissions to run the '" + cmd.name + "' command")
		return
	}
	if c.multi && !cmd.control {
		switch {
		case !cmd.multiOK:
			c.queueError("ERR Command not allowed inside a transaction")
		case len(c.queue) >= maxQueued:
			c.queueError("ERR too many commands queued in MULTI (at most 65536)")
		case c.queuedBytes+queuedSize(args) > c.queuedLimit():
			c.queueError("ERR too many bytes queued in MULTI")
		default:
			c.queue = append(c.queue, queued{cmd: cmd, args: copyArgs(args)})
			c.queuedBytes += queuedSize(args)
			c.runGroup()
			c.w.SimpleString("QUEUED")
		}
		return
	}
	c.call(cmd, args)
}

// call runs a checked command.
func (c *conn) call(cmd *command, args [][]byte) {
	if !cmd.write {
		c.runGroup()
	}
	cmd.run(c, cmd, args)
}

// queueError answers an error found while checking a command; in MULTI it
// also dooms the transaction, as Redis does.
func (c *conn) queueError(msg string) {
	if c.multi {
		c.multiErr = true
	}
	c.fail(msg)
}

func (c *conn) rejectNoAuth(cmd *command, args [][]byte) {
	c.record(cmd, args, auth.ErrUnauthenticated)
	c.queueError("NOAUTH Authentication required.")
}

// authOK reports whether cmd may run on this connection as far as
// authentication goes.
func (c *conn) authOK(cmd *command) bool {
	return c.authed || (cmd != nil && cmd.noAuth)
}

func (c *conn) userName() string {
	if c.ident.Name != "" {
		return c.ident.Name
	}
	return "default"
}

// lookup finds a command by name, case-insensitively, without allocating.
func (c *conn) lookup(name []byte) *command {
	if len(name) > maxCommandName {
		return nil
	}
	return commands[string(c.lowerName(name))]
}

// lowerName returns name lowercased in the connection's scratch buffer
// (nil if too long for any command): indexing a map with string(b) does
// not allocate.
func (c *conn) lowerName(name []byte) []byte {
	if len(name) > maxCommandName {
		return nil
	}
	b := c.lower[:len(name)]
	for i, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b[i] = ch
	}
	return b
}

// queuedLimit bounds the bytes one MULTI holds: as much as one command may
// hold (Limits.MaxQuery). Without it a connection could pin 65,536 commands
// of up to that size each.
func (c *conn) queuedLimit() int {
	if q := c.s.cfg.Limits.MaxQuery; q > 0 {
		return q
	}
	return resp.DefaultMaxQuery
}

// queuedSize is what queueing args holds (copyArgs).
func queuedSize(args [][]byte) int {
	n := len(args) * argOverhead
	for _, a := range args {
		n += len(a)
	}
	return n
}

// endMulti leaves MULTI, dropping what it queued.
func (c *conn) endMulti() {
	c.multi, c.multiErr, c.queue, c.queuedBytes = false, false, nil, 0
}

func copyArgs(args [][]byte) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(args))
	for i, a := range args {
		buf = append(buf, a...)
		out[i] = buf[len(buf)-len(a) : len(buf) : len(buf)]
	}
	return out
}
