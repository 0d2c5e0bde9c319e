package testutil

import (
	"context"
	"time"

	"github.com/dcounter/dcounter/internal/service"
)

// SingleWriter is the part of a service.Service that writes one key at a
// time.
type SingleWriter interface {
	Add(ctx context.Context, key string, delta int64, w service.WriteOptions) (service.Counter, bool, error)
	Delete(ctx context.Context, key string, idem string) (bool, bool, error)
	SetTTL(ctx context.Context, key string, ttl time.Duration, idem string) (service.Counter, bool, error)
}

// WriteEach is service.Service.Writes for a test fake that has no groups:
// each write goes through s's single-key methods, in order. It knows only
// what those do: an OpExpire with a condition or a TTL <= 0 is applied as
// a plain expiry, and Prior is never set.
func WriteEach(ctx context.Context, s SingleWriter, ws []service.Write, out []service.WriteResult) {
	for i, w := range ws {
		var o service.WriteResult
		switch w.Op {
		case service.OpAdd:
			o.Counter, o.Replayed, o.Err = s.Add(ctx, w.Key, w.Delta, w.Opts)
			o.Applied = o.Err == nil
		case service.OpDelete:
			o.Applied, o.Replayed, o.Err = s.Delete(ctx, w.Key, w.Opts.Idem)
		case service.OpExpire:
			o.Counter, o.Replayed, o.Err = s.SetTTL(ctx, w.Key, w.TTL, w.Opts.Idem)
			o.Applied = o.Err == nil
		case service.OpPersist:
			o.Counter, o.Replayed, o.Err = s.SetTTL(ctx, w.Key, 0, w.Opts.Idem)
			o.Applied = o.Err == nil
		}
		out[i] = o
	}
}
