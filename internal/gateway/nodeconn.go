package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The gateway reaches plain-http nodes with a small HTTP/1.1 client of its
// own (nodeConns) instead of net/http's Transport, which costs a proxied
// request two goroutine hand-offs (its read and write loops), a header map
// each way and a context per request. This one writes the request from the
// caller's goroutine in one write, reads the answer in the same goroutine,
// and keeps persistent connections per node. It speaks only what dcounter
// nodes answer: a status line, headers, and a body of exactly
// Content-Length bytes (at most maxNodeBody). Anything else — chunked or
// close-delimited bodies, 1xx answers, folded or oversized headers,
// conflicting lengths — is a protocol error: the connection is closed and
// the request counts as sent (the gateway answers 502, it never retries it).
//
// A pooled connection is checked before reuse (nodeConnAlive): one that the
// node closed while idle is dropped, as net/http's Transport drops it when
// its read loop sees the close. If a reused connection still fails before a
// single byte of the answer arrived (the node closed it as we wrote), the
// request is sent again on another connection only when that is safe: a
// read, or any request of which not one byte was written. A write that may
// have reached the node is never resent.
//
// https:// nodes keep using net/http (TLS, the client certificate).

// maxNodeBody bounds a node's answer body; a longer one is a protocol error.
// It is the bound the gateway always put on what it copies from a node.
const maxNodeBody = 1 << 20

// maxNodeHeader bounds the status line and headers of a node's answer.
const maxNodeHeader = 64 << 10

// nodeIdleTimeout is how long an idle connection is kept; the nodes' own
// idle timeout (api.NewServer) is longer, so they rarely close one first.
const nodeIdleTimeout = 90 * time.Second

// maxIdleNodeConns bounds the idle connections kept per node.
const maxIdleNodeConns = 256

// errNodeProtocol marks an answer the client does not accept.
var errNodeProtocol = errors.New("gateway: malformed answer from node")

// errNoAnswer marks a connection that ended before the first byte of an
// answer.
var errNoAnswer = errors.New("gateway: node closed the connection without answering")

// nodeResponse is what the gateway keeps of a node's answer.
type nodeResponse struct {
	status                       int
	contentType, allow, replayed string
	body                         []byte
}

// nodeHeader is one request header the gateway passes to a node.
type nodeHeader struct{ name, value string }

// nodeConns is the connection pool and client for one plain-http node.
type nodeConns struct {
	mu     sync.Mutex
	parsed bool
	err    error  // why url cannot be used (then nothing else is set)
	addr   string // host:port to dial
	host   string // Host header
	prefix string // path of the node's URL, before every request URI
	idle   []*nodeConn
	closed bool

	dialer net.Dialer
	now    func() time.Time // default time.Now
}

func (p *nodeConns) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// closeStale closes the connections idle for nodeIdleTimeout or longer.
func (p *nodeConns) closeStale() { p.closeIdle(p.clock().Add(-nodeIdleTimeout)) }

type nodeConn struct {
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	idleFrom time.Time
}

// setURL parses the node's base URL once. Caller holds mu.
func (p *nodeConns) setURL(raw string) {
	p.parsed = true
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		p.err = err
		return
	case u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		p.err = fmt.Errorf("gateway: %q: not a plain http://host:port[/path] URL", raw)
		return
	}
	p.host = u.Host
	p.addr = u.Host
	if u.Port() == "" {
		p.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	p.prefix = u.EscapedPath()
	if p.dialer.Timeout == 0 {
		p.dialer = net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}
	}
}

// get returns an idle connection that still looks open, or dials a new one
// (reused false).
func (p *nodeConns) get(ctx context.Context, rawURL string) (c *nodeConn, reused bool, err error) {
	p.mu.Lock()
	if !p.parsed {
		p.setURL(rawURL)
	}
	if p.err != nil {
		p.mu.Unlock()
		return nil, false, p.err
	}
	now := p.clock()
	for len(p.idle) > 0 {
		c = p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idleFrom) < nodeIdleTimeout && nodeConnAlive(c.c) {
			p.mu.Unlock()
			return c, true, nil
		}
		c.c.Close()
	}
	addr := p.addr
	p.mu.Unlock()
	nc, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &nodeConn{c: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096)}, false, nil
}

// put returns c to the pool, or closes it.
func (p *nodeConns) put(c *nodeConn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdleNodeConns {
		p.mu.Unlock()
		c.c.Close()
		return
	}
	c.idleFrom = p.clock()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// closeIdle closes the idle connections idle since before cutoff (all of
// them for the zero time).
func (p *nodeConns) closeIdle(cutoff time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	var drop []*nodeConn
	for _, c := range p.idle {
		if cutoff.IsZero() || c.idleFrom.Before(cutoff) {
			drop = append(drop, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
	for _, c := range drop {
		c.c.Close()
	}
}

// close closes every idle connection; later ones are closed when returned.
func (p *nodeConns) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeIdle(time.Time{})
}

// do sends one request to the node at rawURL (its base URL) and reads the
// answer. body is nil for a request without one (a read); a non-nil body,
// even empty, is sent with its Content-Length and makes the request a
// write, which is never resent once a byte of it may have reached the node.
// The request ends when ctx does or at deadline (zero: none).
func (p *nodeConns) do(ctx context.Context, rawURL, method, uri string, hdr []nodeHeader, body []byte, deadline time.Time) (nodeResponse, error) {
	if err := checkRequest(method, uri, hdr); err != nil {
		return nodeResponse{}, err
	}
	for {
		c, reused, err := p.get(ctx, rawURL)
		if err != nil {
			return nodeResponse{}, err
		}
		resp, keep, written, err := p.roundTrip(ctx, c, method, uri, hdr, body, deadline)
		if err == nil {
			if keep {
				p.put(c)
			} else {
				c.c.Close()
			}
			return resp, nil
		}
		c.c.Close()
		// A reused connection the node closed as we wrote: safe to send
		// again only if the node cannot have acted on it.
		if reused && ctx.Err() == nil && (!written || body == nil && errors.Is(err, errNoAnswer)) {
			continue
		}
		return nodeResponse{}, err
	}
}

// checkRequest refuses what would not make a well-formed request line or
// header: the values come from a client's request.
func checkRequest(method, uri string, hdr []nodeHeader) error {
	if !httpguts.ValidHeaderFieldName(method) || uri == "" || uri[0] != '/' || !validTarget(uri) {
		return fmt.Errorf("gateway: invalid request %q %q", method, uri)
	}
	for _, h := range hdr {
		if !httpguts.ValidHeaderFieldName(h.name) || !httpguts.ValidHeaderFieldValue(h.value) {
			return fmt.Errorf("gateway: invalid header %q", h.name)
		}
	}
	return nil
}

// roundTrip writes the request on c and reads its answer. written reports
// whether any byte of the request may have been sent; keep whether c may be
// reused.
func (p *nodeConns) roundTrip(ctx context.Context, c *nodeConn, method, uri string, hdr []nodeHeader, body []byte, deadline time.Time) (resp nodeResponse, keep, written bool, err error) {
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if err := c.c.SetDeadline(deadline); err != nil {
		return resp, false, false, err
	}
	// Cancellation without a goroutine per request: the context's end
	// moves the deadline into the past, which fails any I/O in progress.
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err == nil {
			// The context ended while the answer was being read: the
			// answer is complete, but the connection's deadline is spent.
			keep = false
		}
	}()

	w := c.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(p.prefix)
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(p.host)
	w.WriteString("\r\nUser-Agent: dcounter-gateway\r\n")
	for _, h := range hdr {
		w.WriteString(h.name)
		w.WriteString(": ")
		w.WriteString(h.value)
		w.WriteString("\r\n")
	}
	if body != nil {
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(len(body)), 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		// bufio.Writer keeps what was not written; a failed write may still
		// have sent part of it.
		return resp, false, w.Buffered() < requestLen(p, method, uri, hdr, body), err
	}
	resp, keep, err = readNodeResponse(c.br, method)
	return resp, keep, true, err
}

// requestLen is the length of the request roundTrip writes.
func requestLen(p *nodeConns, method, uri string, hdr []nodeHeader, body []byte) int {
	n := len(method) + 1 + len(p.prefix) + len(uri) + len(" HTTP/1.1\r\nHost: ") + len(p.host) +
		len("\r\nUser-Agent: dcounter-gateway\r\n") + 2 + len(body)
	for _, h := range hdr {
		n += len(h.name) + 2 + len(h.value) + 2
	}
	if body != nil {
		n += len("Content-Length: \r\n") + len(strconv.Itoa(len(body)))
	}
	return n
}

// readNodeResponse reads one answer to a request of method from br. keep
// reports whether the connection may carry another request.
func readNodeResponse(br *bufio.Reader, method string) (resp nodeResponse, keep bool, err error) {
	if _, err := br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || isConnReset(err) {
			return resp, false, fmt.Errorf("%w: %v", errNoAnswer, err)
		}
		return resp, false, err
	}
	budget := maxNodeHeader
	line, err := readLine(br, &budget)
	if err != nil {
		return resp, false, err
	}
	// HTTP/1.x SP 3DIGIT SP reason
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return resp, false, fmt.Errorf("%w: status line %q", errNodeProtocol, truncate(line))
	}
	http10 := line[7] == '0'
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return resp, false, fmt.Errorf("%w: status line %q", errNodeProtocol, truncate(line))
		}
		resp.status = resp.status*10 + int(d-'0')
	}
	if resp.status < 200 || resp.status > 599 {
		// 1xx included: the gateway never asks for 100-continue.
		return resp, false, fmt.Errorf("%w: status %d", errNodeProtocol, resp.status)
	}
	keep = !http10
	length := int64(-1)
	for {
		line, err := readLine(br, &budget)
		if err != nil {
			return resp, false, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !httpguts.ValidHeaderFieldName(string(line[:colon])) {
			// Also refuses obsolete line folding (a line starting with space).
			return resp, false, fmt.Errorf("%w: header line %q", errNodeProtocol, truncate(line))
		}
		name := line[:colon]
		value := bytes.TrimLeft(bytes.TrimRight(line[colon+1:], " \t"), " \t")
		switch {
		case equalFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (length >= 0 && n != length) || value[0] == '+' {
				return resp, false, fmt.Errorf("%w: Content-Length %q", errNodeProtocol, truncate(value))
			}
			length = n
		case equalFold(name, "Transfer-Encoding"):
			return resp, false, fmt.Errorf("%w: Transfer-Encoding %q", errNodeProtocol, truncate(value))
		case equalFold(name, "Connection"):
			for _, opt := range bytes.Split(value, []byte(",")) {
				opt = bytes.TrimSpace(opt)
				if equalFold(opt, "close") {
					keep = false
				} else if http10 && equalFold(opt, "keep-alive") {
					keep = true
				}
			}
		case equalFold(name, "Content-Type"):
			if resp.contentType == "" {
				resp.contentType = string(value)
			}
		case equalFold(name, "Allow"):
			if resp.allow == "" {
				resp.allow = string(value)
			}
		case equalFold(name, "Idempotent-Replayed"):
			if resp.replayed == "" {
				resp.replayed = string(value)
			}
		}
	}
	if method == "HEAD" || resp.status == 204 || resp.status == 304 {
		return resp, keep, nil
	}
	if length < 0 {
		return resp, false, fmt.Errorf("%w: no Content-Length", errNodeProtocol)
	}
	if length > maxNodeBody {
		return resp, false, fmt.Errorf("%w: body of %d bytes, more than %d", errNodeProtocol, length, maxNodeBody)
	}
	resp.body = make([]byte, length)
	if _, err := io.ReadFull(br, resp.body); err != nil {
		return resp, false, err
	}
	if br.Buffered() > 0 {
		// More than was announced: nothing more is owed on this connection.
		keep = false
	}
	return resp, keep, nil
}

// readLine reads one CRLF-terminated line (without it), charging its
// length to budget.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("%w: header line longer than %d bytes", errNodeProtocol, br.Size())
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if *budget -= len(line); *budget < 0 {
		return nil, fmt.Errorf("%w: headers longer than %d bytes", errNodeProtocol, maxNodeHeader)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line not ended by CRLF", errNodeProtocol)
	}
	line = line[:len(line)-2]
	for _, c := range line {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return nil, fmt.Errorf("%w: control byte in header", errNodeProtocol)
		}
	}
	return line, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// equalFold reports whether b equals the ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isConnReset reports whether err is the node resetting the connection.
func isConnReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// validTarget reports whether s can stand as a request target: visible
// ASCII only.
func validTarget(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
