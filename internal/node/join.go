package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/discoveryclient"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/wire"
)

// join asks the join targets — --join and, with discovery, the peers the
// discovery servers list — for the member list until one answers.
func (n *Node) join(ctx context.Context) error {
	var explicit, targets []string
	for _, t := range n.cfg.Join {
		if t != "" && t != n.ep.Addr() {
			explicit = append(explicit, t)
		}
	}
	targets = append(targets, explicit...)
	if n.disc != nil {
		if err := n.disc.Register(ctx); err != nil {
			if !n.cfg.Bootstrap {
				return fmt.Errorf("%w %v: %v (is it running? use --bootstrap to start anyway; the node keeps trying to register)",
					ErrDiscovery, n.cfg.Discovery, err)
			}
			n.log.Warn("discovery server unreachable: bootstrapping; will keep trying to register", "err", err)
		} else if peers, err := n.disc.Peers(ctx); err == nil {
			for _, p := range peers {
				if p.GossipAddr != n.ep.Addr() && !slices.Contains(targets, p.GossipAddr) {
					targets = append(targets, p.GossipAddr)
				}
			}
		}
	}
	if len(targets) == 0 {
		if len(n.cfg.Join) > 0 {
			n.log.Info("join list names only this node: starting a new cluster")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	retry := n.clk.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	for {
		n.sendJoin(targets)
		select {
		case <-n.joined:
			n.log.Info("joined cluster", "via", targets, "members", n.memberCount())
			return nil
		case <-retry.C():
		case <-ctx.Done():
			switch {
			case n.cfg.Bootstrap:
				n.log.Warn("no join target answered: bootstrapping a new cluster", "targets", targets)
				return nil
			case len(explicit) == 0:
				// Only discovered peers, none answering: stale entries, or a
				// cluster starting all at once. Start alone; discovery keeps
				// introducing us to whoever registers.
				n.log.Warn("no discovered peer answered: starting alone until discovery finds a live one", "peers", targets)
				return nil
			}
			return fmt.Errorf("%w: no answer from %v within %v (is a member running there, with the same cluster name and key? use --bootstrap to start a new cluster instead)",
				ErrJoin, explicit, n.cfg.JoinTimeout)
		}
	}
}

// sendJoin asks each target to add us and answer with its member list.
func (n *Node) sendJoin(targets []string) {
	n.mu.Lock()
	out := n.memb.Join(targets, n.clk.Now())
	n.mu.Unlock()
	var msg []byte
	for _, o := range out {
		if msg == nil {
			var err error
			if msg, err = wire.Encode(n.cfg.Cluster, o.Msg); err != nil {
				n.log.Error("encode join", "err", err)
				return
			}
		}
		_ = n.ep.Send(o.To, msg) // unreachable targets are retried by the caller
	}
}

// discoveryLoop heartbeats to the discovery servers and introduces us to
// every live peer they list that we do not know, or believe dead.
func (n *Node) discoveryLoop() {
	defer n.wg.Done()
	t := n.clk.NewTicker(n.cfg.DiscoveryInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-n.stop:
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DiscoveryInterval)
		err := n.disc.Heartbeat(ctx)
		var peers []discoveryclient.Entry
		if err == nil {
			peers, err = n.disc.Peers(ctx)
		}
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			n.log.Warn("discovery server unreachable; gossip carries on without it", "err", err)
		case err == nil && failing:
			failing = false
			n.log.Info("discovery server reachable again")
		}
		var targets []string
		n.mu.Lock()
		for _, p := range peers {
			id, perr := crdt.ParseReplicaID(p.ID)
			if perr != nil || id == n.id || p.GossipAddr == n.ep.Addr() {
				continue
			}
			if m, ok := n.members.Get(id); !ok || m.State == membership.Dead {
				targets = append(targets, p.GossipAddr)
			}
		}
		n.mu.Unlock()
		if len(targets) > 0 {
			n.log.Debug("introducing ourselves to discovered peers", "peers", targets)
			n.sendJoin(targets)
		}
	}
}
