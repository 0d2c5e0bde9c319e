package node

import (
	"fmt"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/gossip"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/wire"
)

// loop runs the periodic work: anti-entropy, member gossip, heartbeats.
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
	n.members.Beat(now)
	for _, c := range n.members.Detect(now, membership.DetectConfig{
		SuspectAfter: n.cfg.SuspectAfter, DeadAfter: n.cfg.DeadAfter,
		// Only a real freeze of this node counts as a stall, not a tick
		// that came late on a busy machine.
		Stall: max(n.cfg.SuspectAfter/2, 3*n.cfg.SyncInterval),
	}) {
		n.log.Info("member "+c.To.String(), "member", c.Member.Name, "id", c.Member.ID, "gossip_addr", c.Member.GossipAddr,
			"silent_for", now.Sub(c.Member.LastSeen).Round(time.Millisecond))
	}
	peers := n.members.Peers()
	out := n.eng.Sync(peers)
	view := &wire.Members{Members: n.members.Wire(), SentAt: now.UnixMilli()}
	if len(peers) > 0 {
		// Push our view to one random peer; it answers with its own if it
		// knows something we don't (push-pull).
		out = append(out, gossip.Outbound{To: peers[randIntN(len(peers))], Msg: view})
	}
	if dead := n.members.DeadPeers(); len(dead) > 0 {
		// Knock on one dead member's door: if it is back, or the partition
		// healed, its answer makes it alive again within a round trip.
		out = append(out, gossip.Outbound{To: dead[randIntN(len(dead))], Msg: view})
	}
	n.mu.Unlock()
	n.send(out)
}

// scheduleFlush arms the delta timer if it is not armed. Caller holds mu.
func (n *Node) scheduleFlush() {
	if n.flushAt != nil {
		return
	}
	n.flushAt = n.clk.AfterFunc(n.cfg.DeltaInterval, n.flush)
}

func (n *Node) flush() {
	select {
	case <-n.stop:
		return
	default:
	}
	n.mu.Lock()
	n.flushAt = nil
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
		changed []crdt.Entry
		skew    membership.ClockReport
		skewOK  bool
	)
	n.mu.Lock()
	inc := n.members.Self().Incarnation
	switch m := m.(type) {
	case *wire.Join:
		if crdt.ReplicaID(m.Self.ID) == n.id && m.Self.GossipAddr == n.ep.Addr() {
			break // our own Join, through an alias of our address: not a cluster
		}
		added, conflict := n.members.Merge([]wire.Member{m.Self}, now)
		if conflict || crdt.ReplicaID(m.Self.ID) == n.id {
			n.replicaConflict(fmt.Sprintf("a node at %s joined with this node's replica ID", m.Self.GossipAddr))
			break
		}
		out = append(out, gossip.Outbound{To: from, Msg: &wire.JoinAck{Members: n.members.Wire(), SentAt: now.UnixMilli()}})
		out = append(out, n.announce(added, from)...)
		skew, skewOK = n.members.ObserveClock(crdt.ReplicaID(m.Self.ID), from, m.SentAt, now, n.cfg.MaxClockSkew)
	case *wire.JoinAck:
		if from == n.ep.Addr() {
			break // answered by ourselves
		}
		if _, conflict := n.members.Merge(m.Members, now); conflict {
			n.replicaConflict("a peer lists this node's replica ID at another address")
		}
		n.members.HeardFrom(from, now)
		skew, skewOK = n.members.ObserveClock(0, from, m.SentAt, now, n.cfg.MaxClockSkew)
		select {
		case <-n.joined:
		default:
			close(n.joined)
		}
	case *wire.Members:
		added, conflict := n.members.Merge(m.Members, now)
		if conflict {
			n.replicaConflict("a peer lists this node's replica ID at another address")
		}
		n.members.HeardFrom(from, now)
		skew, skewOK = n.members.ObserveClock(0, from, m.SentAt, now, n.cfg.MaxClockSkew)
		out = n.announce(added, from)
		if n.members.Newer(m.Members) {
			out = append(out, gossip.Outbound{To: from, Msg: &wire.JoinAck{Members: n.members.Wire(), SentAt: now.UnixMilli()}})
		}
	default:
		out, changed = n.eng.Handle(from, m)
		for _, c := range changed {
			if c.Replica == n.id {
				// Only we raise our totals, and nothing leaves us before it
				// is durable: a peer holding more of our replica than we do
				// means our history was lost (a restored backup, a copied
				// data dir) while we kept the ID.
				n.replicaConflict(fmt.Sprintf("peer %s holds higher totals for this node's replica than this node", from))
				break
			}
		}
		if len(changed) > 0 {
			via := "repair"
			if m.Type() == wire.TypeDelta {
				via = "delta"
			}
			n.metrics.merged.WithLabelValues(via).Add(float64(len(changed)))
		}
		if len(changed) > 0 && n.eng.Pending() {
			n.scheduleFlush()
		}
	}
	refuted := n.members.Self().Incarnation != inc
	n.mu.Unlock()
	if refuted {
		n.keepIncarnation() // durable before our answer carries it
	}
	if skewOK && skew.Warn {
		n.log.Warn("member's clock differs from ours (membership and idempotency do not depend on it; check NTP)",
			"member", skew.Member.Name, "id", skew.Member.ID, "gossip_addr", skew.Member.GossipAddr,
			"offset", skew.Offset.Round(time.Millisecond), "max_clock_skew", n.cfg.MaxClockSkew)
	}
	if len(changed) > 0 && n.wal != nil {
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

// announce spreads news of members we just learned about to a few peers, so
// a join is known cluster-wide within a round trip instead of a sync interval.
// Caller holds mu.
func (n *Node) announce(added []membership.Member, except string) []gossip.Outbound {
	if len(added) == 0 {
		return nil
	}
	for _, a := range added {
		n.log.Info("member joined", "member", a.Name, "id", a.ID, "gossip_addr", a.GossipAddr)
	}
	msg := &wire.Members{Members: n.members.Wire(), SentAt: n.clk.Now().UnixMilli()}
	var out []gossip.Outbound
	peers := n.members.Peers()
	for _, i := range randPerm(len(peers)) {
		if len(out) == n.cfg.Fanout {
			break
		}
		if peers[i] != except {
			out = append(out, gossip.Outbound{To: peers[i], Msg: msg})
		}
	}
	return out
}
