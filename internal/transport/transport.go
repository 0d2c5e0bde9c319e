package transport

import "errors"

// Handler receives one message. from is the sender's advertised gossip
// address (as declared in its handshake: over TCP with cluster keys, by a
// key holder on this very connection; without keys, by anyone), payload the
// message bytes (after decryption). It is called from the receiving connection's goroutine,
// sequentially per connection (calls for different connections run
// concurrently); it must not retain payload after returning
// unless it copies it, and must not call Close on the transport that calls it.
type Handler func(from string, payload []byte)

// Endpoint is the surface shared by TCP and MemEndpoint.
type Endpoint interface {
	// Addr is the address peers send to to reach this endpoint.
	Addr() string
	// Send queues payload for the peer at address to and returns at once.
	// The transport never modifies payload; the caller must not modify it
	// afterwards (it may pass the same slice to several Sends).
	Send(to string, payload []byte) error
	// Close stops the endpoint; it is idempotent.
	Close() error
}

var (
	_ Endpoint = (*TCP)(nil)
	_ Endpoint = (*MemEndpoint)(nil)
)

// Errors. Returned errors wrap these; test with errors.Is.
var (
	// ErrClosed is returned by Send after Close.
	ErrClosed = errors.New("transport: closed")
	// ErrQueueFull is returned by Send when the peer's outbound queue is full.
	ErrQueueFull = errors.New("transport: peer queue full")
	// ErrFrameTooLarge is returned by Send for a payload that does not fit in
	// a frame, and by the frame reader for a length prefix above the limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrEmptyFrame is returned for an empty payload or a zero length prefix.
	ErrEmptyFrame = errors.New("transport: empty frame")
	// ErrTooManyPeers is returned by Send for a new destination when
	// Config.MaxPeers destinations already have a queue.
	ErrTooManyPeers = errors.New("transport: too many peers")
	// ErrBadAddress is returned by Send for an address that is not host:port.
	ErrBadAddress = errors.New("transport: bad peer address")
	// ErrConfig is returned by Listen for an invalid Config.
	ErrConfig = errors.New("transport: invalid config")
	// ErrAuth means the peers could not authenticate each other (a key
	// missing on one side, a key ID the acceptor does not hold, a replayed
	// connection) or a sealed frame failed to open (forged, corrupted,
	// replayed or reordered).
	ErrAuth = errors.New("transport: authentication failed")
	// ErrHandshake means the handshake was malformed or refused.
	ErrHandshake = errors.New("transport: bad handshake")
	// ErrWrongCluster means the peer belongs to another cluster.
	ErrWrongCluster = errors.New("transport: peer is in another cluster")
	// ErrVersion means the peer speaks another handshake version.
	ErrVersion = errors.New("transport: unsupported handshake version")
)

// RejectReason is why a connection was rejected; its String is the
// reason label of the rejection metric, so the values are stable.
type RejectReason int

// The reasons a connection is rejected.
const (
	RejectAuth          RejectReason = iota // failed authentication: missing or unknown key, forged hello or frame
	RejectWrongCluster                      // the peer is in another cluster
	RejectVersion                           // the peer speaks another handshake version
	RejectHandshake                         // malformed, missing or incomplete handshake
	RejectFrameTooLarge                     // a frame longer than MaxFrame
	RejectEmptyFrame                        // an empty frame
	RejectTooMany                           // an inbound connection beyond MaxInbound
	NumRejectReasons
)

var rejectNames = [NumRejectReasons]string{
	RejectAuth:          "auth",
	RejectWrongCluster:  "wrong_cluster",
	RejectVersion:       "version",
	RejectHandshake:     "handshake",
	RejectFrameTooLarge: "frame_too_large",
	RejectEmptyFrame:    "empty_frame",
	RejectTooMany:       "too_many_connections",
}

func (r RejectReason) String() string {
	if r < 0 || r >= NumRejectReasons {
		return "unknown"
	}
	return rejectNames[r]
}

// rejectReasonOf classifies a failed handshake. The more specific causes
// come first: their errors may also wrap ErrHandshake.
func rejectReasonOf(err error) RejectReason {
	switch {
	case errors.Is(err, ErrWrongCluster):
		return RejectWrongCluster
	case errors.Is(err, ErrVersion):
		return RejectVersion
	case errors.Is(err, ErrAuth):
		return RejectAuth
	}
	return RejectHandshake
}

// Stats are a TCP transport's counters since Listen.
type Stats struct {
	FramesSent     int64 // message frames written (handshakes excluded)
	BytesSent      int64 // payload bytes of those frames
	FramesReceived int64 // message frames handed to the Handler
	BytesReceived  int64 // payload bytes of those frames
	// Dropped counts messages that were never written: refused by Send with
	// ErrQueueFull or ErrTooManyPeers, or discarded because the peer was unreachable, the write
	// failed, or the transport closed with them queued.
	Dropped int64
	// QueueFull counts Sends refused with ErrQueueFull (included in Dropped).
	QueueFull int64
	// Rejected counts connections refused or closed for misbehaving, on
	// either side: failed authentication, wrong cluster, bad or missing
	// handshake, unsupported version, oversized or empty frames, and inbound
	// connections beyond MaxInbound. It is the sum of RejectedBy.
	Rejected int64
	// RejectedBy splits Rejected by reason, indexed by RejectReason.
	RejectedBy   [NumRejectReasons]int64
	Dials        int64 // outbound connection attempts
	DialFailures int64 // attempts that did not end in a completed handshake
}
