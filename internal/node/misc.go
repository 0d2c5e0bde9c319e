package node

import (
	"os"
	"sync"
	"time"
)

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "dcounter"
	}
	return h
}

// rateLimiter lets a log line through at most once a second per topic, so a
// misbehaving peer cannot flood the log.
type rateLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *rateLimiter) do(now time.Time, topic string, f func()) {
	r.mu.Lock()
	if r.last == nil {
		r.last = make(map[string]time.Time)
	}
	if t, ok := r.last[topic]; ok && now.Sub(t) < time.Second {
		r.mu.Unlock()
		return
	}
	if len(r.last) > 1024 {
		clear(r.last)
	}
	r.last[topic] = now
	r.mu.Unlock()
	f()
}
