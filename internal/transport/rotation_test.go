package transport

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

// TestKeyRotation walks three transports from key A to key B by the
// documented procedure, restarting one at a time (as a rolling restart
// does): add B everywhere, make B primary everywhere, remove A. After every
// single restart every node must still reach every other.
func TestKeyRotation(t *testing.T) {
	const a, b = 10, 11
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = listen(t, Config{Keys: clusterkeytest.Ring(t, a)})
	}
	seq := 0
	allPairsDeliver := func(step string) {
		t.Helper()
		for _, from := range nodes {
			for _, to := range nodes {
				if from == to {
					continue
				}
				seq++
				msg := fmt.Sprintf("%s #%d", step, seq)
				// Resend until it arrives: a restarted peer may be in its
				// dial backoff, which drops what is queued.
				waitFor(t, step+": "+from.Addr()+" -> "+to.Addr(), func() bool {
					if hasMessage(to, msg) {
						return true
					}
					from.Send(to.Addr(), []byte(msg))
					return waitBriefly(func() bool { return hasMessage(to, msg) })
				})
			}
		}
	}
	restart := func(i int, keys clusterkey.Keyring) {
		t.Helper()
		addr := nodes[i].Addr()
		nodes[i].Close()
		nodes[i] = listen(t, Config{BindAddr: addr, Keys: keys})
	}
	allPairsDeliver("start")
	for _, step := range []struct {
		name string
		keys clusterkey.Keyring
	}{
		{"add B", clusterkeytest.Ring(t, a, b)},
		{"make B primary", clusterkeytest.Ring(t, b, a)},
		{"remove A", clusterkeytest.Ring(t, b)},
	} {
		for i := range nodes {
			restart(i, step.keys)
			allPairsDeliver(fmt.Sprintf("%s, node %d restarted", step.name, i))
		}
	}
	for _, n := range nodes {
		if r := n.Stats().Rejected; r != 0 {
			t.Errorf("%s rejected %d connections during the rotation", n.Addr(), r)
		}
	}
}

// TestKeyRotationOutOfOrder shows why the steps must complete everywhere
// before the next begins: a node that drops A while others still dial
// with A refuses them.
func TestKeyRotationOutOfOrder(t *testing.T) {
	const a, b = 10, 11
	dialer := listen(t, Config{Keys: clusterkeytest.Ring(t, a, b)})
	acceptor := listen(t, Config{Keys: clusterkeytest.Ring(t, b)})
	dialer.Send(acceptor.Addr(), []byte("x"))
	waitFor(t, "refusal", func() bool { return acceptor.Stats().Rejected >= 1 && dialer.Stats().Rejected >= 1 })
	if acceptor.in.len() != 0 {
		t.Error("delivered")
	}
	// Each side counts the refusal before it logs it.
	waitFor(t, "acceptor to say why", func() bool { return acceptor.log.has(slog.LevelWarn, "not in the accepting node's keyring") })
	waitFor(t, "dialer to say why", func() bool { return dialer.log.has(slog.LevelWarn, "not in the accepting node's keyring") })
}

func hasMessage(n *node, msg string) bool {
	for _, m := range n.in.get() {
		if string(m.payload) == msg {
			return true
		}
	}
	return false
}

// waitBriefly polls cond for up to 200ms, so that a resend loop does not
// flood a peer that is merely slow.
func waitBriefly(cond func() bool) bool {
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}
