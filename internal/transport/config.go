package transport

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
)

// Defaults for Config's zero fields.
const (
	DefaultDialTimeout      = 2 * time.Second
	DefaultWriteTimeout     = 5 * time.Second
	DefaultUnackedTimeout   = 2 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultQueueLen         = 1024
	DefaultMaxInbound       = 1024
	DefaultMaxPeers         = 4096
	DefaultIdleWriter       = time.Minute
)

// Config configures a TCP transport. The zero value of every field but
// Cluster means its default.
type Config struct {
	// BindAddr is the TCP listen address, e.g. "127.0.0.1:7946" or
	// "127.0.0.1:0" for any free port.
	BindAddr string
	// AdvertiseAddr is the address sent in the handshake: what peers dial
	// to reach this node. Default: the bound listener address (which is not
	// dialable from elsewhere when binding 0.0.0.0 or [::]; set it then).
	AdvertiseAddr string
	// Cluster is the cluster name, 1..64 bytes; required. Nodes of
	// different clusters refuse each other's connections.
	Cluster string
	// Keys is the cluster keyring. With keys, every connection starts with
	// a Noise handshake under the primary key (when dialing) or any key of
	// the ring (when accepting), and every frame is sealed with that
	// connection's own session keys. Default empty: plaintext. Every node of
	// a cluster needs keys, or none; see the package doc for rotation.
	Keys clusterkey.Keyring
	// MaxFrame is the largest frame body sent or accepted. Default 32 MiB;
	// at least 64 bytes, at most 1 GiB. A larger incoming length prefix is
	// logged and closes the connection; Send refuses a payload that would not
	// fit (MaxFrame, minus 16 bytes when sealed). Nodes should agree on it:
	// a frame above the receiver's limit costs the connection.
	MaxFrame int
	// DialTimeout bounds connecting to a peer. Default 2s.
	DialTimeout time.Duration
	// WriteTimeout bounds writing one frame. Default 5s.
	WriteTimeout time.Duration
	// UnackedTimeout is how long sent data may stay unacknowledged by the
	// peer's kernel before the connection is given up and redialled
	// (TCP_USER_TIMEOUT on Linux). Default 2s.
	UnackedTimeout time.Duration
	// IdleTimeout is the read deadline on inbound connections: a peer silent
	// for this long is disconnected (it redials when it next has something
	// to say). Default 2m.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the handshake on both sides: the acceptor
	// waiting for the Hello, the dialer waiting for the answer. Default 5s.
	HandshakeTimeout time.Duration
	// QueueLen is each peer's outbound queue length, in messages; when it is
	// full, Send returns ErrQueueFull. The queue grows with use up to this
	// length rather than being allocated whole. Default 1024.
	QueueLen int
	// MaxInbound caps concurrent inbound connections; more are closed at
	// once. Default 1024.
	MaxInbound int
	// MaxPeers caps the destinations that have a queue and a writer at
	// once; Send to a further address returns ErrTooManyPeers until an
	// idle one is reclaimed (see IdleWriter). It bounds what a peer can
	// cost by making the node answer many made-up addresses. Default 4096.
	MaxPeers int
	// IdleWriter is how long a destination's queue may stay empty before
	// its writer closes the connection and exits, freeing its queue; the
	// next Send to that address starts a new one. Default 1m.
	IdleWriter time.Duration
	// Logger receives the transport's logs. Default: discard.
	Logger *slog.Logger
	// Clock times reconnect backoff and IdleWriter. Default clock.Real{}. Socket deadlines
	// always use the wall clock, because the kernel does.
	Clock clock.Clock
}

// withDefaults returns c with defaults filled in, or an error wrapping
// ErrConfig.
func (c Config) withDefaults() (Config, error) {
	if len(c.Cluster) == 0 || len(c.Cluster) > MaxClusterLen {
		return c, fmt.Errorf("%w: cluster name must be 1-%d bytes, got %d", ErrConfig, MaxClusterLen, len(c.Cluster))
	}
	if c.AdvertiseAddr != "" {
		if err := checkAddr(c.AdvertiseAddr); err != nil {
			return c, fmt.Errorf("%w: advertise address: %w", ErrConfig, err)
		}
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.MaxFrame < minMaxFrame || c.MaxFrame > maxMaxFrame {
		return c, fmt.Errorf("%w: MaxFrame must be %d..%d bytes, got %d", ErrConfig, minMaxFrame, maxMaxFrame, c.MaxFrame)
	}
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
		n   string
	}{
		{&c.DialTimeout, DefaultDialTimeout, "DialTimeout"},
		{&c.UnackedTimeout, DefaultUnackedTimeout, "UnackedTimeout"},
		{&c.WriteTimeout, DefaultWriteTimeout, "WriteTimeout"},
		{&c.IdleTimeout, DefaultIdleTimeout, "IdleTimeout"},
		{&c.HandshakeTimeout, DefaultHandshakeTimeout, "HandshakeTimeout"},
		{&c.IdleWriter, DefaultIdleWriter, "IdleWriter"},
	} {
		if *d.p == 0 {
			*d.p = d.def
		}
		if *d.p < 0 {
			return c, fmt.Errorf("%w: %s must be positive, got %v", ErrConfig, d.n, *d.p)
		}
	}
	if c.QueueLen == 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxInbound == 0 {
		c.MaxInbound = DefaultMaxInbound
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.QueueLen < 0 || c.MaxInbound < 0 || c.MaxPeers < 0 {
		return c, fmt.Errorf("%w: QueueLen, MaxInbound and MaxPeers must be positive", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	return c, nil
}

// checkAddr accepts "host:port" addresses that fit in a Hello.
func checkAddr(addr string) error {
	if len(addr) == 0 || len(addr) > MaxAddrLen {
		return fmt.Errorf("%w: %q must be 1-%d bytes", ErrBadAddress, addr, MaxAddrLen)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: %v", ErrBadAddress, err)
	}
	return nil
}
