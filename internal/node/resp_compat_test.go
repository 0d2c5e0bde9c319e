package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRESPRedisEdgeCases: answers where Redis's rules are easy to get
// wrong, through a real node.
func TestRESPRedisEdgeCases(t *testing.T) {
	nd := startDiskNode(t, t.TempDir(), func(c *Config) { c.RESPAddr = "127.0.0.1:0" })
	rdb := redis.NewClient(&redis.Options{Addr: nd.RESPAddr(), Protocol: 2})
	defer rdb.Close()
	ctx := context.Background()
	do := func(args ...any) any {
		v, err := rdb.Do(ctx, args...).Result()
		if err != nil {
			return "ERR:" + err.Error()
		}
		return v
	}
	steps := []struct {
		args []any
		want any
	}{
		{[]any{"INCR", "a"}, int64(1)},
		{[]any{"EXISTS", "a", "a", "b"}, int64(2)},
		{[]any{"DEL", "a", "a"}, int64(1)},
		{[]any{"INCR", "a"}, int64(1)},
		{[]any{"MULTI"}, "OK"},
		{[]any{"DEL", "a", "a"}, "QUEUED"},
		{[]any{"EXEC"}, []any{int64(1)}},
		{[]any{"INCRBY", "a", "5"}, int64(5)},
		{[]any{"GETDEL", "a"}, "5"},
		{[]any{"GETDEL", "a"}, "ERR:redis: nil"},
		{[]any{"INCR", "a"}, int64(1)},
		{[]any{"EXPIRE", "a", "100", "GT"}, int64(0)},
		{[]any{"EXPIRE", "a", "100", "LT"}, int64(1)},
		{[]any{"TTL", "a"}, int64(100)},
		{[]any{"EXPIRE", "a", "-1", "GT"}, int64(0)},
		{[]any{"EXPIRE", "a", "-1", "NX"}, int64(0)},
		{[]any{"GET", "a"}, "1"},
		{[]any{"EXPIRE", "a", "0", "XX"}, int64(1)},
		{[]any{"GET", "a"}, "ERR:redis: nil"},
		{[]any{"INCRBY", "a", "-0"}, "ERR:ERR value is not an integer or out of range"},
		{[]any{"INCRBY", "a", "+1"}, "ERR:ERR value is not an integer or out of range"},
		{[]any{"INCRBY", "a", " 1"}, "ERR:ERR value is not an integer or out of range"},
		{[]any{"INCRBY", "a", "9223372036854775808"}, "ERR:ERR value is not an integer or out of range"},
		{[]any{"DECRBY", "a", "-9223372036854775808"}, "ERR:ERR decrement would overflow"},
		{[]any{"INCRBY", "a", "9223372036854775807"}, int64(9223372036854775807)},
		{[]any{"INCR", "a"}, "ERR:ERR increment or decrement would overflow"},
		{[]any{"GET", "a"}, "9223372036854775807"},
		{[]any{"EXPIRE", "a", "9223372036854775807"}, "ERR:ERR invalid expire time in 'expire' command"},
		{[]any{"PEXPIRE", "a", "-9223372036854775808"}, int64(1)},
		{[]any{"EXISTS", "a"}, int64(0)},
	}
	for _, st := range steps {
		got := do(st.args...)
		if fmtAny(got) != fmtAny(st.want) {
			t.Errorf("%v: got %#v want %#v", st.args, got, st.want)
		}
	}
}

func fmtAny(v any) string {
	switch x := v.(type) {
	case []any:
		s := "["
		for _, e := range x {
			s += fmtAny(e) + ","
		}
		return s + "]"
	}
	return fmt.Sprintf("%T:%v", v, v)
}
