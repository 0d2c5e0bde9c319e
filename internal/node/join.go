package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/discoveryclient"
	"github.com/dcounter/dcounter/internal/joinaddr"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/wire"
)

// joinResolveRetry is how often names are re-resolved while joining, and
// the first delay before retrying addresses that did not answer afterwards.
const joinResolveRetry = time.Second

// join asks the join targets — --join (its names resolved) and, with
// discovery, the peers the discovery servers list — for the member list
// until one answers. A name that does not resolve counts as a target that
// does not answer: it is retried (re-resolved) until JoinTimeout.
func (n *Node) join(ctx context.Context) error {
	explicit, resolveErr := n.resolveJoin(ctx)
	var discovered []string
	if n.disc != nil {
		if err := n.disc.Register(ctx); err != nil {
			if !n.cfg.Bootstrap {
				return fmt.Errorf("%w %v: %v (is it running? use --bootstrap to start anyway; the node keeps trying to register)",
					ErrDiscovery, n.cfg.Discovery, err)
			}
			n.log.Warn("discovery server unreachable: bootstrapping; will keep trying to register", "err", err)
		} else if peers, err := n.disc.Peers(ctx); err == nil {
			for _, p := range peers {
				if p.GossipAddr != n.ep.Addr() && !slices.Contains(discovered, p.GossipAddr) {
					discovered = append(discovered, p.GossipAddr)
				}
			}
		}
	}
	targets := mergeTargets(firstTargets(explicit), discovered)
	if len(targets) == 0 && resolveErr == nil {
		if len(n.cfg.Join) > 0 {
			n.log.Info("join list names only this node: starting a new cluster")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	retry := n.clk.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	resolved := n.clk.Now()
	for {
		if len(targets) > 0 {
			n.sendJoin(targets)
		}
		select {
		case <-n.joined:
			n.log.Info("joined cluster", "via", targets, "members", n.memberCount())
			return nil
		case <-retry.C():
			if joinaddr.HasDynamic(n.joinTargets) && n.clk.Now().Sub(resolved) >= joinResolveRetry {
				resolved = n.clk.Now()
				explicit, resolveErr = n.resolveJoin(ctx)
				targets = mergeTargets(firstTargets(explicit), discovered)
			}
		case <-ctx.Done():
			switch {
			case n.cfg.Bootstrap:
				n.log.Warn("no join target answered: bootstrapping a new cluster", "targets", targets, "unresolved", resolveErr)
				return nil
			case len(explicit) == 0 && resolveErr == nil:
				// Only discovered peers, none answering: stale entries, or a
				// cluster starting all at once. Start alone; discovery keeps
				// introducing us to whoever registers.
				n.log.Warn("no discovered peer answered: starting alone until discovery finds a live one", "peers", targets)
				return nil
			case resolveErr != nil:
				return fmt.Errorf("%w: no answer from %v within %v, and %v (use --bootstrap to start a new cluster instead)",
					ErrJoin, explicit, n.cfg.JoinTimeout, resolveErr)
			}
			return fmt.Errorf("%w: no answer from %v within %v (is a member running there, with the same cluster name and key? use --bootstrap to start a new cluster instead)",
				ErrJoin, explicit, n.cfg.JoinTimeout)
		}
	}
}

// mergeTargets returns a followed by what of b is not in a.
func mergeTargets(a, b []string) []string {
	out := slices.Clone(a)
	for _, t := range b {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// resolveJoin returns the addresses --join names, without this node's
// own, and the error of any name that did not resolve. Each failing name
// is logged at most once a minute; one that resolves again is logged as
// such.
func (n *Node) resolveJoin(ctx context.Context) ([]string, error) {
	rctx, cancel := context.WithTimeout(ctx, joinResolveTimeout)
	defer cancel()
	addrs, err := joinaddr.Resolve(rctx, n.cfg.Resolver, n.joinTargets)
	now := n.clk.Now()
	failed := map[string]bool{}
	for _, f := range joinaddr.Failures(err) {
		failed[f.Spec] = true
		if n.resolveLog.Allow(f.Spec, now) {
			n.log.Warn("join address does not resolve; retrying", "spec", f.Spec, "err", f.Err)
		}
	}
	for _, t := range n.joinTargets {
		if t.Dynamic() && !failed[t.Spec] && n.unresolved[t.Spec] {
			n.log.Info("join address resolves again", "spec", t.Spec)
			n.resolveLog.Forget(t.Spec)
		}
	}
	n.unresolved = failed
	self := n.ep.Addr()
	out := addrs[:0]
	for _, a := range addrs {
		if a != self {
			out = append(out, a)
		}
	}
	return out, err
}

// firstTargets bounds the addresses the first join is sent to (see
// maxJoinPerRound).
func firstTargets(addrs []string) []string { return addrs[:min(len(addrs), maxJoinPerRound)] }

// maxJoinPerRound bounds the addresses one resolution sends a Join to:
// one answer is enough to join, and gossip brings the rest.
const maxJoinPerRound = 64

// joinResolveTimeout bounds one resolution of every --join name.
const joinResolveTimeout = 5 * time.Second

// dnsJoinLoop re-resolves the --join names every JoinInterval and joins
// every address that is not a live member: a replica added later is found,
// and a cluster whose members all came back at new addresses reassembles.
// While some address does not answer (or a name does not resolve) it tries
// again sooner, after 1s, doubling up to JoinInterval.
func (n *Node) dnsJoinLoop() {
	defer n.wg.Done()
	t := n.clk.NewTicker(min(n.cfg.JoinInterval, joinResolveRetry))
	defer t.Stop()
	next := n.clk.Now().Add(n.cfg.JoinInterval)
	backoff := joinResolveRetry
	for {
		select {
		case <-n.stop:
			return
		case <-t.C():
		}
		now := n.clk.Now()
		if now.Before(next) {
			continue
		}
		addrs, err := n.resolveJoin(n.ctx)
		live := map[string]bool{}
		n.mu.Lock()
		for _, m := range n.members.Members() {
			if m.State != membership.Dead && m.State != membership.Left {
				live[m.GossipAddr] = true
			}
		}
		n.mu.Unlock()
		var targets []string
		for _, a := range addrs {
			if !live[a] {
				targets = append(targets, a)
			}
		}
		if len(targets) > maxJoinPerRound {
			// A huge (or forged) answer must not make us dial thousands.
			targets = targets[:maxJoinPerRound]
		}
		if len(targets) > 0 {
			n.log.Debug("joining addresses --join resolves to that are not live members", "addrs", targets)
			n.sendJoin(targets)
		}
		if len(targets) > 0 || err != nil {
			next = now.Add(backoff)
			backoff = min(2*backoff, n.cfg.JoinInterval)
		} else {
			next, backoff = now.Add(n.cfg.JoinInterval), joinResolveRetry
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
