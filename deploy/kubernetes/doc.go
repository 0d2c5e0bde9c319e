// Package kubernetes holds dcounter's Kubernetes manifests (the YAML files
// beside this one, applied with `kubectl apply -k`) and no code: its test
// decodes every manifest strictly into the Kubernetes API types and checks
// it against the dcounter binary built from this module — flags and
// environment variables, probe routes, ports, Secret keys, labels and
// selectors, security settings — so that the manifests cannot drift from
// the binary without a failing test, and no cluster is needed to know it.
package kubernetes
