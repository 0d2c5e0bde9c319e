// Package memberproof lets a gateway check, before it sends a node any
// client traffic, that the process answering at an address is a member of
// its cluster: it holds the cluster key, belongs to the cluster named, and
// agrees that it is reached at that very address.
//
// # Protocol
//
// The verifier (a gateway) sends
//
//	POST /cluster/proof
//	{"challenge":"<32 random bytes, base64url without padding>"}
//
// to the address it will send traffic to. The prover (a node) answers
//
//	200 {"cluster":"…","id":"<replica id>","name":"…","key":"<key ID, 16 hex>","mac":"<base64url>"}
//
// with mac = HMAC-SHA256 under the key derived for clusterkey.MemberProof of
// the length-prefixed parts (cluster, challenge bytes, host, id, name) —
// clusterkey.Key.MAC — where host is the request's Host: the address the
// verifier used. The prover signs with its primary key; the verifier accepts
// any key of its ring, checks the cluster name is its own, and records the
// id and name from the proof (never from discovery or a health check).
//
// The prover signs only for a Host that is its own: its advertised client
// address, or the local address the connection arrived on. So a process at
// another address cannot relay a gateway's challenge to a real node and
// pass the answer off as its own: the node would be asked to sign for the
// relay's address, and refuses (421).
//
// Freshness comes from the verifier's random challenge alone: no clock is
// compared with another, and a recorded answer is worthless for any other
// challenge. A prover without a key answers 404.
//
// # What it does not cover
//
// The proof is about the moment it was made: a process that takes over the
// address after a node's proof gets traffic until the next proof fails (the
// gateway proves every health interval). Only TLS with verified
// certificates binds every request to the node.
package memberproof

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// Path is the route a prover serves.
const Path = "/cluster/proof"

// ChallengeSize is the length of a verifier's challenge.
const ChallengeSize = 32

// maxBody bounds requests and answers: both are a few hundred bytes.
const maxBody = 4 << 10

// Errors a verifier reports. ErrUnreachable means no answer came back;
// ErrNotMember, that what answered did not prove membership.
var (
	ErrUnreachable = errors.New("memberproof: unreachable")
	ErrNotMember   = errors.New("memberproof: not a proven member")
)

// Request is the verifier's body.
type Request struct {
	Challenge string `json:"challenge"`
}

// Proof is the prover's answer.
type Proof struct {
	Cluster string `json:"cluster"`
	ID      string `json:"id"`
	Name    string `json:"name"`
	Key     string `json:"key"`
	MAC     string `json:"mac"`
}

// MAC is the proof's MAC under k.
func MAC(k clusterkey.Key, cluster string, challenge []byte, host, id, name string) []byte {
	return k.MAC(clusterkey.MemberProof, []byte(cluster), challenge, []byte(host), []byte(id), []byte(name))
}

// Prover answers challenges for one node.
type Prover struct {
	// Cluster, ID and Name are what the node proves.
	Cluster, ID, Name string
	// Keyring signs proofs with its primary key; empty: no proofs (404).
	Keyring clusterkey.Keyring
	// Advertised lists the addresses (host:port) the node is reached at
	// besides the local address of each connection (its advertised client
	// address, say).
	Advertised []string
}

var _ http.Handler = (*Prover)(nil)

// ServeHTTP answers POST Path.
func (p *Prover) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	if p.Keyring.Empty() {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this node has no cluster key: it cannot prove membership"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	var req Request
	if err != nil || len(body) > maxBody || json.Unmarshal(body, &req) != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"challenge":"<base64url>"}`})
		return
	}
	ch, err := base64.RawURLEncoding.DecodeString(req.Challenge)
	if err != nil || len(ch) != ChallengeSize {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("challenge must be %d base64url bytes", ChallengeSize)})
		return
	}
	if !p.ownHost(r) {
		writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": fmt.Sprintf(
			"this node is not reached at %q: set its --advertise-http-addr to the address gateways use", r.Host)})
		return
	}
	k := p.Keyring.Primary()
	writeJSON(w, http.StatusOK, Proof{Cluster: p.Cluster, ID: p.ID, Name: p.Name, Key: k.ID().String(),
		MAC: base64.RawURLEncoding.EncodeToString(MAC(k, p.Cluster, ch, r.Host, p.ID, p.Name))})
}

// ownHost reports whether r.Host is an address of this node: one it
// advertises, or the local address the connection arrived on.
func (p *Prover) ownHost(r *http.Request) bool {
	for _, a := range p.Advertised {
		if strings.EqualFold(a, r.Host) {
			return true
		}
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	lhost, lport, err := net.SplitHostPort(local.String())
	if err != nil {
		return false
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil || port != lport {
		return false
	}
	hip, lip := net.ParseIP(strings.Trim(host, "[]")), net.ParseIP(lhost)
	if hip != nil && lip != nil {
		return hip.Equal(lip)
	}
	// "localhost" is ours if the connection came in on loopback.
	return strings.EqualFold(host, "localhost") && lip != nil && lip.IsLoopback()
}

// Mount serves p at Path and everything else with next.
func Mount(next http.Handler, p *Prover) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Path {
			p.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Member is what a proof establishes.
type Member struct {
	ID, Name string
	Key      clusterkey.ID
}

// Verifier checks proofs for one cluster.
type Verifier struct {
	// Cluster is the cluster name a member must prove.
	Cluster string
	// Keyring holds the keys a proof may be made with.
	Keyring clusterkey.Keyring
	// HTTP sends the challenges.
	HTTP *http.Client
}

// Prove challenges the node at base (http://host:port) and returns who it
// proved to be. The error wraps ErrUnreachable or ErrNotMember, with
// details meant for logs, not for clients.
func (v *Verifier) Prove(ctx context.Context, base string) (Member, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return Member{}, fmt.Errorf("%w: bad address", ErrNotMember)
	}
	ch := make([]byte, ChallengeSize)
	rand.Read(ch) // never fails (crypto/rand since Go 1.24)
	body, _ := json.Marshal(Request{Challenge: base64.RawURLEncoding.EncodeToString(ch)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+Path, bytes.NewReader(body))
	if err != nil {
		return Member{}, fmt.Errorf("%w: %v", ErrNotMember, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := v.HTTP.Do(req)
	if err != nil {
		return Member{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return Member{}, fmt.Errorf("%w: reading the answer: %v", ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Member{}, fmt.Errorf("%w: answered %s", ErrNotMember, resp.Status)
	}
	var p Proof
	if len(b) > maxBody || json.Unmarshal(b, &p) != nil {
		return Member{}, fmt.Errorf("%w: the answer is not a proof", ErrNotMember)
	}
	if p.Cluster != v.Cluster {
		return Member{}, fmt.Errorf("%w: member of cluster %q, not %q", ErrNotMember, p.Cluster, v.Cluster)
	}
	id, err := clusterkey.ParseID(p.Key)
	if err != nil {
		return Member{}, fmt.Errorf("%w: bad key id", ErrNotMember)
	}
	mac, err := base64.RawURLEncoding.DecodeString(p.MAC)
	if err != nil || !v.Keyring.Verify(id, mac, clusterkey.MemberProof,
		[]byte(p.Cluster), ch, []byte(req.Host), []byte(p.ID), []byte(p.Name)) {
		return Member{}, fmt.Errorf("%w: the proof does not verify with our keys", ErrNotMember)
	}
	return Member{ID: p.ID, Name: p.Name, Key: id}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
