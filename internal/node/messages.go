package node

import (
	"fmt"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/gossip"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/wire"
)

// loop runs the periodic work: anti-entropy and the member protocol's tick
// (heartbeats, failure detection, member gossip).
func (n *Node) loop() {
	defer n.wg.Done()
	t := n.clk.NewTicker(n.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C():
			n.tick()
		}
	}
}

func (n *Node) tick() {
	now := n.clk.Now()
	n.mu.Lock()
	n.expireIdem()
	mout, ev := n.memb.Tick(now)
	n.memberEvents(ev, now)
	out := n.eng.Sync(n.members.Peers())
	out = appendMember(out, mout)
	n.mu.Unlock()
	n.send(out)
}

// appendMember appends member-protocol messages to gossip's.
func appendMember(out []gossip.Outbound, m []membership.Outbound) []gossip.Outbound {
	for _, o := range m {
		out = append(out, gossip.Outbound(o))
	}
	return out
}

// memberEvents logs and acts on what the member protocol reports. Caller
// holds mu.
func (n *Node) memberEvents(ev membership.Events, now time.Time) {
	if ev.Refuted {
		// Durable before any message carries it (all are sent after mu is
		// released), so the next start outgrows it even after a crash.
		// Refutations are rare; the write is a few milliseconds.
		n.keepIncarnation(n.members.Self().Incarnation)
	}
	for _, a := range ev.Added {
		n.log.Info("member joined", "member", a.Name, "id", a.ID, "gossip_addr", a.GossipAddr)
	}
	for _, p := range ev.Pruned {
		n.log.Info("member pruned: dead or left for longer than the member horizon; its counts stay", "member", p.Name, "id", p.ID,
			"state", p.State.String(), "horizon", n.cfg.MemberHorizon)
	}
	for _, c := range ev.Changes {
		if c.To == membership.Alive {
			// Heard from just now: how long it was silent is gone with the
			// old LastSeen; the state it left says how bad it was.
			n.log.Info("member alive again", "member", c.Member.Name, "id", c.Member.ID, "gossip_addr", c.Member.GossipAddr,
				"was", c.From.String())
			continue
		}
		n.log.Info("member "+c.To.String(), "member", c.Member.Name, "id", c.Member.ID, "gossip_addr", c.Member.GossipAddr,
			"silent_for", now.Sub(c.Member.LastSeen).Round(time.Millisecond))
	}
	if c := ev.Clock; c != nil {
		n.log.Warn("member's clock differs from ours (membership and idempotency do not depend on it; check NTP)",
			"member", c.Member.Name, "id", c.Member.ID, "gossip_addr", c.Member.GossipAddr,
			"offset", c.Offset.Round(time.Millisecond), "max_clock_skew", n.cfg.MaxClockSkew)
	}
	if ev.Conflict != "" {
		n.replicaConflict(ev.Conflict)
	}
	if ev.Joined {
		close(n.joined)
	}
}

// scheduleFlush arms the delta timer if it is not armed: DeltaInterval
// from now, or the delta gap after the last flush if that is later. Under
// load news then leaves once per gap, whatever the rate it comes in at,
// so what a node sends, and what every peer receives, is a bounded number
// of messages per second, each carrying more. The flush it arms is one of
// the node's goroutines (n.wg): Shutdown stops it, or waits for it. Once
// the node is stopping it arms nothing (Shutdown pushes what is pending
// itself). Caller holds mu.
func (n *Node) scheduleFlush() {
	if n.flushAt != nil {
		return
	}
	select {
	case <-n.stop:
		return
	default:
	}
	delay := n.cfg.DeltaInterval
	if !n.flushed.IsZero() {
		delay = max(delay, deltaGap(n.cfg, n.members.Len()-1)-n.clk.Now().Sub(n.flushed))
	}
	n.wg.Add(1)
	n.flushDue = n.clk.Now().Add(delay)
	n.flushAt = n.clk.AfterFunc(delay, n.flush)
}

// deltaGap is the least time between two flushes of a node with the
// given number of peers (see Config.DeltaGap).
func deltaGap(cfg Config, peers int) time.Duration {
	if cfg.DeltaGap > 0 {
		return cfg.DeltaGap
	}
	return min(MaxAutoDeltaGap, cfg.DeltaInterval*time.Duration(max(0, peers))/2)
}

func (n *Node) flush() {
	defer n.wg.Done()
	select {
	case <-n.stop:
		return
	default:
	}
	n.mu.Lock()
	n.flushAt = nil
	n.flushed = n.clk.Now()
	out := n.eng.Flush(n.members.Peers())
	n.mu.Unlock()
	n.send(out)
}

// send encodes each distinct message once and hands it to the transport.
func (n *Node) send(out []gossip.Outbound) {
	var (
		last    wire.Message
		payload []byte
	)
	for _, o := range out {
		if o.Msg != last {
			var err error
			if payload, err = wire.Encode(n.cfg.Cluster, o.Msg); err != nil {
				n.log.Error("encode failed", "type", o.Msg.Type(), "err", err)
				last, payload = nil, nil
				continue
			}
			last = o.Msg
		}
		n.metrics.message(o.Msg.Type(), "out", len(payload))
		if err := n.ep.Send(o.To, payload); err != nil {
			n.metrics.sendFails.Inc()
			n.logLimit.do(n.clk.Now(), "send:"+o.To, func() {
				n.log.Warn("message to peer dropped", "peer", o.To, "type", o.Msg.Type(), "err", err)
			})
		}
	}
}

// receive handles one message from a peer; called by the transport.
func (n *Node) receive(from string, payload []byte) {
	m, err := wire.Decode(n.cfg.Cluster, payload)
	if err != nil {
		n.logLimit.do(n.clk.Now(), "decode:"+from, func() {
			n.log.Warn("dropped a message", "peer", from, "err", err)
		})
		return
	}
	n.metrics.message(m.Type(), "in", len(payload))
	now := n.clk.Now()
	var (
		out     []gossip.Outbound
		changed crdt.Contents
	)
	n.mu.Lock()
	switch mout, ev, ok := n.memb.Handle(from, m, now); {
	case ok:
		out = appendMember(nil, mout)
		n.memberEvents(ev, now)
	default:
		out, changed = n.eng.Handle(from, m)
		for _, c := range changed.Entries {
			if c.Replica == n.id && n.ks.StatusOf(c.Key, n.nowMs()).Live {
				// Only we raise our totals, and nothing leaves us before it
				// is durable: a peer holding more of our replica than we do
				// means our history was lost (a restored backup, a copied
				// data dir) while we kept the ID. Our entries of a key that
				// is not live (an expired generation come back from a peer
				// after this node forgot it) are dead either way.
				n.replicaConflict(fmt.Sprintf("peer %s holds higher totals for this node's replica than this node", from))
				break
			}
		}
		if changed.Len() > 0 {
			via := "repair"
			if m.Type() == wire.TypeDelta {
				via = "delta"
			}
			n.metrics.merged.WithLabelValues(via).Add(float64(changed.Len()))
		}
		if changed.Len() > 0 && n.eng.Pending() {
			n.scheduleFlush()
		}
	}
	n.mu.Unlock()
	if changed.Len() > 0 && n.wal != nil {
		// Merged remote state is logged too, so a node (or a whole cluster)
		// restarted at once comes back with everything it had. No need to
		// wait: its owners hold it durably.
		n.wal.AppendAsync(changed)
	}
	n.send(out)
}

// replicaConflict records that another process uses, or used, this node's
// replica ID with a history this node lacks. Writes acknowledged now could
// vanish in the merge (invariant 4), so the node refuses writes and reports
// unhealthy until it is restarted with --new-replica. Caller holds mu.
func (n *Node) replicaConflict(why string) {
	if n.conflict != nil {
		return
	}
	n.conflict = fmt.Errorf("%w: %s; refusing writes: restart this node with --new-replica", ErrReplicaConflict, why)
	n.log.Error("replica ID conflict", "replica", n.id, "err", n.conflict)
}
