// Package kubernetes holds dcounter's Kubernetes manifests (the YAML files
// beside this one, applied with `kubectl apply -k`) and no code. Its tests
// prove the manifests without a cluster: they decode every manifest
// strictly into the Kubernetes API types and check it against the dcounter
// binary built from this module — flags and environment variables, probe
// routes, ports, Secret keys, labels and selectors, the grace period,
// security settings — and run the node and gateway with the manifests' own
// arguments, so that the manifests cannot drift from the binary without a
// failing test.
package kubernetes
