package node

import "github.com/dcounter/dcounter/internal/clusterkey"

// keyring is the cluster keyring (empty without one): it signs discovery
// requests and answers gateways' membership challenges, with its primary key.
func (n *Node) keyring() clusterkey.Keyring { return n.cfg.ClusterKeys }
