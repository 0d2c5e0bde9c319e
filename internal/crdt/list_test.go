package crdt

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func keysOf(items []Item) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it.Key)
	}
	return out
}

func listKeyspace(t *testing.T) *Keyspace {
	ks := New()
	for i, k := range []string{"b", "a", "ab", "abc", "ac", "b/1", "b/2", "b/3", "c", "ключ", "\u00ff", "a\x00"} {
		ks.Merge(Entry{Key: k, Replica: 1, P: uint64(i + 1)})
	}
	return ks
}

func TestListOrderAndPrefix(t *testing.T) {
	ks := listKeyspace(t)
	setTTL(t, ks, "ac", 0, 500, TTLAlways)
	for _, tc := range []struct {
		prefix, after string
		want          []string
	}{
		{"", "", []string{"a", "a\x00", "ab", "abc", "ac", "b", "b/1", "b/2", "b/3", "c", "\u00ff", "ключ"}},
		{"a", "", []string{"a", "a\x00", "ab", "abc", "ac"}},
		{"ab", "", []string{"ab", "abc"}},
		{"b/", "", []string{"b/1", "b/2", "b/3"}},
		{"b/", "b/1", []string{"b/2", "b/3"}},
		{"b/", "b/15", []string{"b/2", "b/3"}}, // after need not be held
		{"b/", "b/3", []string{}},
		{"b/", "a", []string{"b/1", "b/2", "b/3"}},   // after before the prefix
		{"b/", "c", []string{}},                      // after beyond the prefix
		{"a", "ab", []string{"abc", "ac"}},           // after inside the prefix
		{"", "b/3", []string{"c", "\u00ff", "ключ"}}, // after alone
		{"zz", "", []string{}},
		{"abcd", "", []string{}},
		{"ключ", "", []string{"ключ"}},
	} {
		items, next, more := ks.List(tc.prefix, tc.after, 100, 1000, 0)
		if got := keysOf(items); !slices.Equal(got, tc.want) || more {
			t.Errorf("List(%q, %q) = %q, more=%v; want %q", tc.prefix, tc.after, got, more, tc.want)
		}
		if len(items) > 0 && next != items[len(items)-1].Key {
			t.Errorf("List(%q, %q): next = %q, want the last key", tc.prefix, tc.after, next)
		}
	}
	items, _, _ := ks.List("ab", "", 10, 10, 0)
	if !reflect.DeepEqual(items, []Item{{Key: "ab", Value: 3}, {Key: "abc", Value: 4}}) {
		t.Fatalf("items = %+v", items)
	}
	items, _, _ = ks.List("ac", "", 10, 10, 0)
	if !reflect.DeepEqual(items, []Item{{Key: "ac", Value: 5, Deadline: 500}}) {
		t.Fatalf("items with a deadline = %+v", items)
	}
}

func TestListLimitAndPaging(t *testing.T) {
	ks := listKeyspace(t)
	all, _, _ := ks.List("", "", 1000, 1000, 0)
	for limit := 1; limit <= len(all)+1; limit++ {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(all)+1 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			items, next, more := ks.List("", after, limit, 1000, 0)
			if len(items) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(items))
			}
			got = append(got, keysOf(items)...)
			if !more {
				break
			}
			if len(items) != limit || next != items[len(items)-1].Key {
				t.Fatalf("limit %d: more with a short page %q, next %q", limit, keysOf(items), next)
			}
			after = next
		}
		if !slices.Equal(got, keysOf(all)) {
			t.Fatalf("limit %d: pages gave %q, want %q", limit, got, keysOf(all))
		}
	}
	// A page that ends exactly at the last key reports no more.
	if _, _, more := ks.List("b/", "", 3, 1000, 0); more {
		t.Fatal("a full page ending at the last prefixed key reports more")
	}
	if _, next, more := ks.List("b/", "", 2, 1000, 0); !more || next != "b/2" {
		t.Fatalf("next, more = %q, %v", next, more)
	}
}

func TestListSkipsDeadKeysAndBoundsTheScan(t *testing.T) {
	ks := New()
	for i := range 20 {
		ks.Merge(Entry{Key: fmt.Sprintf("k%02d", i), Replica: 1, P: uint64(i + 1)})
	}
	for i := 1; i < 20; i += 2 { // odd keys: deleted
		m, _ := ks.Deletion(fmt.Sprintf("k%02d", i), 10)
		ks.MergeMeta(m)
	}
	for i := 2; i < 20; i += 4 { // keys 2, 6, 10, ...: expire at 100
		setTTL(t, ks, fmt.Sprintf("k%02d", i), 0, 100, TTLAlways)
	}
	items, _, _ := ks.List("k", "", 100, 100, 99)
	if got := keysOf(items); len(got) != 10 {
		t.Fatalf("before expiry: %q", got)
	}
	items, _, more := ks.List("k", "", 100, 100, 100)
	want := []string{"k00", "k04", "k08", "k12", "k16"}
	if got := keysOf(items); !slices.Equal(got, want) || more {
		t.Fatalf("after expiry: %q, more=%v; want %q", got, more, want)
	}
	// A scan budget that ends on dead keys: more, and next is the last key
	// visited. Deleted keys are not even visited (they leave the index).
	items, next, more := ks.List("k", "k04", 100, 1, 100)
	if got := keysOf(items); len(got) != 0 || !more || next != "k06" {
		t.Fatalf("scan 1 after k04 = %q, next %q, more %v; want none, k06, true", got, next, more)
	}
	items, next, more = ks.List("k", next, 100, 3, 100)
	if got := keysOf(items); !slices.Equal(got, []string{"k08", "k12"}) || !more || next != "k12" {
		t.Fatalf("continuing = %q, next %q, more %v", got, next, more)
	}
	// Paging with a tiny scan budget visits every live key once, in order.
	var got []string
	after := ""
	for {
		items, next, more := ks.List("k", after, 100, 2, 100)
		got = append(got, keysOf(items)...)
		if !more {
			break
		}
		if next <= after {
			t.Fatalf("next %q does not advance past %q", next, after)
		}
		after = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged with scan 2: %q, want %q", got, want)
	}
	// Forgotten keys are gone from the index.
	ks.Reclaim(100+horizon, grace, horizon)
	if ks.index.Len() != ks.Len() || ks.Len() != 5 {
		t.Fatalf("index %d keys, keyspace %d", ks.index.Len(), ks.Len())
	}
	items, _, _ = ks.List("", "", 100, 100, 100+horizon)
	if got := keysOf(items); !slices.Equal(got, want) {
		t.Fatalf("after reclaim: %q", got)
	}
	// Re-created keys come back in order.
	ks.Merge(Entry{Key: "k03", Replica: 1, P: 1})
	items, _, _ = ks.List("k0", "", 100, 100, 100+horizon)
	if got := keysOf(items); !slices.Equal(got, []string{"k00", "k03", "k04", "k08"}) {
		t.Fatalf("after re-creation: %q", got)
	}
}

func TestListEmpty(t *testing.T) {
	ks := New()
	if items, next, more := ks.List("", "", 10, 10, 0); len(items) != 0 || next != "" || more {
		t.Fatalf("List(empty) = %+v, %q, %v", items, next, more)
	}
	ks.Merge(Entry{Key: "x", Replica: 1, P: 1})
	if items, _, more := ks.List("y", "", 10, 10, 0); len(items) != 0 || more {
		t.Fatalf("List(no match) = %+v, %v", items, more)
	}
	// A key whose value is 0 but that was written is live and listed.
	ks.Merge(Entry{Key: "zero", Replica: 1, P: 1, N: 1})
	if items, _, _ := ks.List("zero", "", 10, 10, 0); !reflect.DeepEqual(items, []Item{{Key: "zero"}}) {
		t.Fatalf("List(zero) = %+v", items)
	}
}

// TestListMatchesModel: random keyspaces, prefixes and cursors against a
// sorted-slice model.
func TestListMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	alpha := []string{"a", "b", "/", "é"}
	word := func() string {
		var sb strings.Builder
		for range 1 + rng.IntN(4) {
			sb.WriteString(alpha[rng.IntN(len(alpha))])
		}
		return sb.String()
	}
	for range 200 {
		ks := New()
		for range rng.IntN(60) {
			k := word()
			ks.Merge(Entry{Key: k, Replica: 1, P: 1 + rng.Uint64N(3)})
			switch rng.IntN(4) {
			case 0:
				m, _ := ks.Deletion(k, 5)
				ks.MergeMeta(m)
			case 1:
				if m, ok := ks.Expiry(k, 0, 50+rng.Int64N(100), TTLAlways); ok {
					ks.MergeMeta(m)
				}
			}
		}
		now := rng.Int64N(200)
		prefix, after := "", ""
		if rng.IntN(2) == 0 {
			prefix = word()[:1]
		}
		if rng.IntN(2) == 0 {
			after = word()
		}
		var model []string
		ks.index.Ascend(func(x ref) bool {
			k := ks.recs.at(x).key()
			if strings.HasPrefix(k, prefix) && k > after && ks.StatusOf(k, now).Live {
				model = append(model, k)
			}
			return true
		})
		limit := 1 + rng.IntN(10)
		var got []string
		for pages := 0; ; pages++ {
			items, next, more := ks.List(prefix, after, limit, 1+rng.IntN(5), now)
			for _, it := range items {
				st := ks.StatusOf(it.Key, now)
				if it.Value != st.Value || it.Deadline != st.Deadline {
					t.Fatalf("item %+v, status %+v", it, st)
				}
			}
			got = append(got, keysOf(items)...)
			if !more {
				break
			}
			after = next
			if pages > 100 {
				t.Fatal("paging does not end")
			}
		}
		if !slices.Equal(got, model) && (len(got) != 0 || len(model) != 0) {
			t.Fatalf("List(%q) at %d = %q, want %q", prefix, now, got, model)
		}
	}
}
