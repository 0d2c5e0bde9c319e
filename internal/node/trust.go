package node

import (
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/memberproof"
)

// keyring is the cluster keyring (empty without one): it signs discovery
// requests and answers gateways' membership challenges, with its primary key.
func (n *Node) keyring() clusterkey.Keyring { return n.cfg.ClusterKeys }

// prover answers gateways' challenges (POST /cluster/proof) on the client
// API, for the advertised client address or the address a connection came
// in on.
func (n *Node) prover(httpAddr string) *memberproof.Prover {
	return &memberproof.Prover{Cluster: n.cfg.Cluster, ID: n.id.String(), Name: n.cfg.Name,
		Keyring: n.keyring(), Advertised: []string{httpAddr}}
}
