package e2e

import (
	"fmt"
	"testing"
	"time"
)

// gatewayAnswers replays GET /nodes answers, one per call, then repeats the
// last. Each answer is (last_check, value per node), for nodes node1..n.
func gatewayAnswers(n int, answers ...[]any) func() ([]gatewayNode, error) {
	i := 0
	return func() ([]gatewayNode, error) {
		a := answers[min(i, len(answers)-1)]
		i++
		out := make([]gatewayNode, n)
		for j := range out {
			v := a[1+j].(int64)
			out[j] = gatewayNode{Name: fmt.Sprintf("node%d", j+1), Status: "healthy", Value: &v, LastCheck: a[0].(string)}
		}
		return out, nil
	}
}

// The gateway's GET /nodes shows what its last health check read. Right
// after the writes stop, every node can show the same value from a check
// made while writes were still landing; the compose test once took that for
// convergence and reported acknowledged writes as lost. Only values read in
// a check round that began after the first poll may count.
func TestConvergedValuesIgnoresChecksFromBeforeTheWritesStopped(t *testing.T) {
	nodes := gatewayAnswers(3,
		[]any{"t1", int64(100), int64(100), int64(100)}, // equal, but read mid-load
		[]any{"t1", int64(100), int64(100), int64(100)},
		[]any{"t2", int64(150), int64(100), int64(150)}, // this round may have begun before the first poll
		[]any{"t2", int64(150), int64(100), int64(150)},
		[]any{"t3", int64(150), int64(150), int64(150)},
	)
	vs, err := convergedValues(t, nodes, 3, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range vs {
		if v != 150 {
			t.Errorf("%s = %d, want 150 (the value read after the writes stopped)", name, v)
		}
	}
}

func TestConvergedValuesNeedsEveryNodeRecheckedTwice(t *testing.T) {
	// node3's check is stuck at its old stamp: its value proves nothing.
	round := 0
	nodes := func() ([]gatewayNode, error) {
		round++
		v, stamp := int64(7), fmt.Sprint(round)
		return []gatewayNode{
			{Name: "node1", Status: "healthy", Value: &v, LastCheck: stamp},
			{Name: "node2", Status: "healthy", Value: &v, LastCheck: stamp},
			{Name: "node3", Status: "healthy", Value: &v, LastCheck: "stale"},
		}, nil
	}
	if vs, err := convergedValues(t, nodes, 3, 200*time.Millisecond); err == nil {
		t.Fatalf("accepted %v although node3 was never checked again", vs)
	}
}
