package respserver

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

type step struct {
	args  []string
	want  string // RESP2 reply
	want3 string // RESP3 reply; "" when the same
}

// s is a step whose command is cmd split on spaces.
func s(cmd, want string, want3 ...string) step {
	st := step{args: strings.Fields(cmd), want: want}
	if len(want3) > 0 {
		st.want3 = want3[0]
	}
	return st
}

const (
	null2 = "$-1\r\n"
	null3 = "_\r\n"
)

var commandCases = []struct {
	name  string
	setup func(f *fakeService)
	steps []step
}{
	{"ping", nil, []step{
		s("PING", "+PONG\r\n"),
		s("ping hello", bulk("hello")),
		s("PING a b", "-ERR wrong number of arguments for 'ping' command\r\n"),
		s("ECHO x", bulk("x")),
		s("ECHO", "-ERR wrong number of arguments for 'echo' command\r\n"),
		s("SELECT 0", "+OK\r\n"),
		s("SELECT 1", "-ERR DB index is out of range\r\n"),
		s("SELECT x", "-ERR invalid DB index\r\n"),
	}},
	{"incr", nil, []step{
		s("INCR k", ":1\r\n"),
		s("incr k", ":2\r\n"),
		s("DECR k", ":1\r\n"),
		s("INCRBY k 10", ":11\r\n"),
		s("DECRBY k 5", ":6\r\n"),
		s("DECRBY k -4", ":10\r\n"),
		s("INCRBY k 0", ":10\r\n"),
		s("INCRBY absent 0", ":0\r\n"),
		s("EXISTS absent", ":0\r\n"),
		s("INCRBY k -9223372036854775808", ":-9223372036854775798\r\n"),
		s("DECR n", ":-1\r\n"),
	}},
	{"integers", nil, []step{
		s("INCRBY k abc", "-ERR value is not an integer or out of range\r\n"),
		s("INCRBY k +1", "-ERR value is not an integer or out of range\r\n"),
		s("INCRBY k 01", "-ERR value is not an integer or out of range\r\n"),
		s("INCRBY k -0", "-ERR value is not an integer or out of range\r\n"),
		s("INCRBY k 1.5", "-ERR value is not an integer or out of range\r\n"),
		s("INCRBY k 9223372036854775808", "-ERR value is not an integer or out of range\r\n"),
		{args: []string{"INCRBY", "k", " 1"}, want: "-ERR value is not an integer or out of range\r\n"},
		s("DECRBY k -9223372036854775808", "-ERR decrement would overflow\r\n"),
		s("INCR", "-ERR wrong number of arguments for 'incr' command\r\n"),
		s("INCRBY k", "-ERR wrong number of arguments for 'incrby' command\r\n"),
		s("INCR k x", "-ERR wrong number of arguments for 'incr' command\r\n"),
		s("EXISTS k", ":0\r\n"),
	}},
	{"overflow", func(f *fakeService) { f.set("big", math.MaxInt64, 0) }, []step{
		s("INCR big", "-ERR increment or decrement would overflow\r\n"),
		s("GET big", bulk("9223372036854775807")),
	}},
	{"get", func(f *fakeService) { f.set("a", 5, 0); f.set("b", -7, 0) }, []step{
		s("GET a", bulk("5")),
		s("GET b", bulk("-7")),
		s("GET zz", null2, null3),
		s("MGET a zz b", "*3\r\n"+bulk("5")+null2+bulk("-7"), "*3\r\n"+bulk("5")+null3+bulk("-7")),
		s("EXISTS a a zz b", ":3\r\n"),
		s("TYPE a", "+string\r\n"),
		s("TYPE zz", "+none\r\n"),
		s("DBSIZE", ":2\r\n"),
		{args: []string{"GET", ""}, want: "-ERR key must be 1-512 bytes of valid UTF-8\r\n"},
		{args: []string{"MGET", "a", "\xff"}, want: "-ERR key must be 1-512 bytes of valid UTF-8\r\n"},
	}},
	{"del", func(f *fakeService) { f.set("a", 5, 0); f.set("b", 6, 0); f.set("c", 7, 0) }, []step{
		s("DEL a zz a", ":1\r\n"),
		s("UNLINK b c", ":2\r\n"),
		s("EXISTS a b c", ":0\r\n"),
		s("INCR a", ":1\r\n"),
		s("GETDEL a", bulk("1")),
		s("GETDEL a", null2, null3),
		{args: []string{"DEL", "x", ""}, want: "-ERR key must be 1-512 bytes of valid UTF-8\r\n"},
	}},
	{"expire", func(f *fakeService) { f.set("a", 5, 0); f.set("t", 1, 10*time.Second) }, []step{
		s("TTL a", ":-1\r\n"),
		s("TTL zz", ":-2\r\n"),
		s("PTTL zz", ":-2\r\n"),
		s("TTL t", ":10\r\n"),
		s("PTTL t", ":10000\r\n"),
		s("EXPIRE zz 10", ":0\r\n"),
		s("EXPIRE a 100 XX", ":0\r\n"),
		s("EXPIRE a 100 GT", ":0\r\n"),
		s("EXPIRE a 100 NX", ":1\r\n"),
		s("EXPIRE a 200 NX", ":0\r\n"),
		s("TTL a", ":100\r\n"),
		s("EXPIRE a 50 gt", ":0\r\n"),
		s("EXPIRE a 50 LT", ":1\r\n"),
		s("PEXPIRE a 1500", ":1\r\n"),
		s("TTL a", ":2\r\n"),
		s("PTTL a", ":1500\r\n"),
		s("PERSIST a", ":1\r\n"),
		s("PERSIST a", ":0\r\n"),
		s("PERSIST zz", ":0\r\n"),
		s("TTL a", ":-1\r\n"),
		s("EXPIRE a 0", ":1\r\n"),
		s("EXISTS a", ":0\r\n"),
		s("EXPIRE t -5", ":1\r\n"),
		s("EXISTS t", ":0\r\n"),
		s("EXPIRE b 10 NX XX", "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"),
		s("EXPIRE b 10 GT LT", "-ERR GT and LT options at the same time are not compatible\r\n"),
		s("EXPIRE b 10 FOO", "-ERR Unsupported option FOO\r\n"),
		s("EXPIRE b x", "-ERR value is not an integer or out of range\r\n"),
		s("EXPIRE b 315360001", "-ERR invalid expire time in 'expire' command\r\n"),
		s("PEXPIRE b 9223372036854775807", "-ERR invalid expire time in 'pexpire' command\r\n"),
		s("EXPIRE b -9223372036854775808", "-ERR invalid expire time in 'expire' command\r\n"),
		s("EXPIRE b", "-ERR wrong number of arguments for 'expire' command\r\n"),
	}},
	{"dc.incrby", nil, []step{
		s("DC.INCRBY k 5", ":5\r\n"),
		s("DC.INCRBY k -2 IDEMPOTENCY tok1", ":3\r\n"),
		s("DC.INCRBY k -2 IDEMPOTENCY tok1", ":3\r\n"),
		s("GET k", bulk("3")),
		s("DC.INCRBY k 7 IDEMPOTENCY tok1", "-ERR this idempotency key was already used for a different request\r\n"),
		s("DC.INCRBY w 1 EX 60", ":1\r\n"),
		s("DC.INCRBY w 1 EX 100", ":2\r\n"),
		s("TTL w", ":60\r\n"),
		s("DC.INCRBY w 1 PX 100000 ALWAYS", ":3\r\n"),
		s("TTL w", ":100\r\n"),
		s("DC.INCRBY k 0", "-ERR DC.INCRBY amount must not be 0\r\n"),
		s("DC.INCRBY k x", "-ERR value is not an integer or out of range\r\n"),
		s("DC.INCRBY k 1 EX 0", "-ERR invalid expire time in 'dc.incrby' command\r\n"),
		s("DC.INCRBY k 1 EX 1 PX 1", "-ERR syntax error\r\n"),
		s("DC.INCRBY k 1 ALWAYS", "-ERR DC.INCRBY's ALWAYS needs EX or PX\r\n"),
		s("DC.INCRBY k 1 IDEMPOTENCY", "-ERR syntax error\r\n"),
		{args: []string{"DC.INCRBY", "k", "1", "IDEMPOTENCY", "a b"}, want: "-ERR an idempotency key must be 1-255 printable ASCII characters\r\n"},
		s("GET k", bulk("3")),
	}},
	{"refused", nil, []step{
		s("SET k 1", "-ERR SET"+counterTail+"\r\n"),
		s("SETEX k 1 1", "-ERR SETEX"+counterTail+"\r\n"),
		s("INCRBYFLOAT k 1.5", "-ERR INCRBYFLOAT is not supported: counters are 64-bit integers\r\n"),
		s("WATCH k", "-ERR WATCH is not supported: every replica takes writes, so no node can tell that a watched key is unchanged; use MULTI/EXEC (applied in order and made durable together) or DC.INCRBY\r\n"),
		s("FOO a b", "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"),
		s("FOO", "-ERR unknown command 'FOO', with args beginning with: \r\n"),
		s("EXISTS k", ":0\r\n"),
	}},
	{"hello", nil, []step{
		s("HELLO 4", "-NOPROTO unsupported protocol version\r\n"),
		s("HELLO x", "-ERR Protocol version is not an integer or out of range\r\n"),
		s("HELLO 3 FOO", "-ERR Syntax error in HELLO option 'FOO'\r\n"),
		s("HELLO 3 AUTH default", "-ERR Syntax error in HELLO option 'AUTH'\r\n"),
		s("HELLO 3 AUTH bob x", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
		s("AUTH x", "-"+msgNoPassword+"\r\n"),
		s("AUTH default x", "+OK\r\n"),
		s("HELLO 2 SETNAME app", "*16\r\n"+bulk("server")+bulk("redis")+bulk("version")+bulk("7.2.0")+bulk("dcounter_version")+bulk("1.2.3")+
			bulk("proto")+":2\r\n"+bulk("id")+":1\r\n"+bulk("mode")+bulk("standalone")+bulk("role")+bulk("master")+bulk("modules")+"*0\r\n"),
		s("CLIENT GETNAME", bulk("app")),
	}},
	{"client", nil, []step{
		s("CLIENT GETNAME", null2, null3),
		s("CLIENT SETNAME foo", "+OK\r\n"),
		s("CLIENT GETNAME", bulk("foo")),
		{args: []string{"CLIENT", "SETNAME", "a b"}, want: "-" + msgBadName + "\r\n"},
		s("CLIENT ID", ":1\r\n"),
		s("CLIENT SETINFO LIB-NAME go-redis(x)", "+OK\r\n"),
		s("CLIENT SETINFO LIB-VER 9.0", "+OK\r\n"),
		s("CLIENT SETINFO FOO 9.0", "-ERR Unrecognized option 'FOO'\r\n"),
		s("CLIENT FOO", "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"),
		s("CLIENT SETNAME", "-ERR wrong number of arguments for 'client|setname' command\r\n"),
		s("CLIENT", "-ERR wrong number of arguments for 'client' command\r\n"),
	}},
	{"config", func(f *fakeService) { f.health.Durability = "fsync=interval" }, []step{
		s("CONFIG GET save", "*2\r\n"+bulk("save")+bulk(""), "%1\r\n"+bulk("save")+bulk("")),
		s("CONFIG GET APPEND*", "*4\r\n"+bulk("appendonly")+bulk("no")+bulk("appendfsync")+bulk("everysec"), "%2\r\n"+bulk("appendonly")+bulk("no")+bulk("appendfsync")+bulk("everysec")),
		s("CONFIG GET databases maxmemory nothing", "*4\r\n"+bulk("databases")+bulk("1")+bulk("maxmemory")+bulk("0"), "%2\r\n"+bulk("databases")+bulk("1")+bulk("maxmemory")+bulk("0")),
		s("CONFIG SET save x", "-ERR CONFIG SET is not supported by dcounter: configure the node with its flags\r\n"),
		s("CONFIG FOO", "-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n"),
	}},
	{"command", nil, []step{
		s("COMMAND INFO get nosuch",
			"*2\r\n*10\r\n"+bulk("get")+":2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*0\r\n*0\r\n"+null2,
			"*2\r\n*10\r\n"+bulk("get")+":2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~3\r\n+@read\r\n+@string\r\n+@fast\r\n~0\r\n*0\r\n*0\r\n"+null3),
		s("COMMAND COUNT", ":33\r\n"),
		s("CONFIG HELP", "*"+strconv.Itoa(len(helps["config|help"]))+"\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+GET <pattern>\r\n+    Return parameters matching the glob-like <pattern> and their values.\r\n+    (dcounter answers save, appendonly, appendfsync, databases, maxmemory;\r\n+    the node is configured with its flags.)\r\n+HELP\r\n+    Print this help.\r\n"),
		s("COMMAND DOCS", "*0\r\n", "%0\r\n"),
		s("COMMAND LIST FILTERBY PATTERN client|set*", "*2\r\n"+bulk("client|setname")+bulk("client|setinfo")),
	}},
	{"scan", func(f *fakeService) {
		for _, k := range []string{"a1", "a2", "a3", "b1", "user:1", "user:2", "us*r"} {
			f.set(k, 1, 0)
		}
	}, []step{
		s("SCAN 0 COUNT 100", "*2\r\n"+bulk("0")+"*7\r\n"+bulk("a1")+bulk("a2")+bulk("a3")+bulk("b1")+bulk("us*r")+bulk("user:1")+bulk("user:2")),
		s("SCAN 0 MATCH user:* COUNT 100", "*2\r\n"+bulk("0")+"*2\r\n"+bulk("user:1")+bulk("user:2")),
		s("SCAN 0 MATCH us\\*r", "*2\r\n"+bulk("0")+"*1\r\n"+bulk("us*r")),
		s("SCAN 0 MATCH *1", "*2\r\n"+bulk("0")+"*3\r\n"+bulk("a1")+bulk("b1")+bulk("user:1")),
		s("SCAN 0 TYPE hash", "*2\r\n"+bulk("0")+"*0\r\n"),
		s("SCAN 0 COUNT 0", "-ERR syntax error\r\n"),
		s("SCAN 0 COUNT x", "-ERR value is not an integer or out of range\r\n"),
		s("SCAN 0 BOGUS 1", "-ERR syntax error\r\n"),
		s("SCAN 0 MATCH", "-ERR syntax error\r\n"),
		s("SCAN 12345", "-ERR invalid cursor\r\n"),
		s("SCAN x", "-ERR invalid cursor\r\n"),
	}},
	{"info", func(f *fakeService) { f.set("a", 1, 0) }, []step{
		s("INFO keyspace", bulk("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"), "=48\r\ntxt:# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n\r\n"),
		s("INFO nosuch", bulk(""), "=4\r\ntxt:\r\n"),
		s("INFO clients", bulk("# Clients\r\nconnected_clients:1\r\n"), "=36\r\ntxt:# Clients\r\nconnected_clients:1\r\n\r\n"),
	}},
}

func TestCommands(t *testing.T) {
	for _, tc := range commandCases {
		for _, proto := range []int{2, 3} {
			t.Run(tc.name+"/resp"+strconv.Itoa(proto), func(t *testing.T) {
				f := newFake()
				if tc.setup != nil {
					tc.setup(f)
				}
				_, addr := startServer(t, Config{Service: f})
				c := dial(t, addr)
				if proto == 3 {
					if r := c.do("HELLO 3"); !strings.HasPrefix(r, "%8\r\n") {
						t.Fatalf("HELLO 3: %q", r)
					}
				}
				for _, st := range tc.steps {
					want := st.want
					if proto == 3 && st.want3 != "" {
						want = st.want3
					}
					c.send(enc(st.args...))
					if got := c.reply(); got != want {
						t.Errorf("%q:\n got %q\nwant %q", st.args, got, want)
					}
				}
			})
		}
	}
}

func TestScanPages(t *testing.T) {
	f := newFake()
	var want []string
	for i := range 25 {
		k := "k" + strconv.Itoa(100+i)
		f.set(k, 1, 0)
		want = append(want, k)
	}
	f.set("other", 1, 0)
	_, addr := startServer(t, Config{Service: f})
	c := dial(t, addr)
	cursor := "0"
	var got []string
	for range 10 {
		c.send(enc("SCAN", cursor, "MATCH", "k*", "COUNT", "10"))
		r := c.reply()
		lines := strings.Split(r, "\r\n")
		cursor = lines[2]
		for i := 5; i < len(lines); i += 2 {
			got = append(got, lines[i])
		}
		if cursor == "0" {
			break
		}
	}
	if cursor != "0" || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("scan got %v (cursor %s), want %v", got, cursor, want)
	}
	// The prefix of the pattern is the listing's prefix.
	for _, call := range f.callLog() {
		if strings.HasPrefix(call, "list") && !strings.HasPrefix(call, `list "k"`) {
			t.Errorf("listing without the pattern's prefix: %s", call)
		}
	}
}

func TestCursorTableBounded(t *testing.T) {
	tb := newCursorTable(3)
	ids := []uint64{tb.put("a"), tb.put("b"), tb.put("c")}
	if _, ok := tb.get(ids[0]); !ok { // a is now the most recent
		t.Fatal("a forgotten")
	}
	tb.put("d") // evicts b
	if _, ok := tb.get(ids[1]); ok {
		t.Fatal("b kept beyond the bound")
	}
	if p, ok := tb.get(ids[0]); !ok || p != "a" {
		t.Fatal("a lost")
	}
	if tb.len() != 3 {
		t.Fatalf("len %d", tb.len())
	}
	for _, id := range ids {
		if id == 0 || id>>63 != 0 {
			t.Fatalf("cursor %d not a non-zero 63-bit number", id)
		}
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"a*", "abc", true}, {"a*", "bac", false},
		{"*c", "abc", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"[abc]x", "bx", true}, {"[abc]x", "dx", false}, {"[^abc]x", "dx", true}, {"[^abc]x", "ax", false},
		{"[a-c]", "b", true}, {"[c-a]", "b", true}, {"[a-c]", "d", false},
		{`a\*b`, "a*b", true}, {`a\*b`, "axb", false}, {`[\]]`, "]", true},
		{"*a*b*c*", "xxaxxbxxcxx", true}, {"*a*b*c*", "xxaxxcxxbxx", false},
		{"a*b", "ab", true}, {"a*b", "abbb", true}, {"a*b", "abba", false},
		{"[abc", "a", true}, {"h[ae]llo", "hallo", true}, {"h*llo", "heeeello", true},
		{"abc", "abc", true}, {"abc", "abcd", false}, {"", "", true}, {"", "a", false},
		{`\`, `\`, true},
	}
	for _, c := range cases {
		if got := globMatch([]byte(c.p), []byte(c.s), false); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v", c.p, c.s, got)
		}
	}
	if !globMatch([]byte("APPEND*"), []byte("appendonly"), true) || globMatch([]byte("APPEND*"), []byte("appendonly"), false) {
		t.Error("nocase")
	}
	if got := literalPrefix([]byte(`us\*er:*`)); got != "us*er:" {
		t.Errorf("literalPrefix = %q", got)
	}
}

func TestUnknownCommandTruncates(t *testing.T) {
	long := strings.Repeat("x", 200)
	got := unknownCommand([][]byte{[]byte(long), []byte(strings.Repeat("a", 100)), []byte(strings.Repeat("b", 100)), []byte("c")})
	want := "ERR unknown command '" + long[:128] + "', with args beginning with: '" + strings.Repeat("a", 100) + "' '" + strings.Repeat("b", 25) + "' "
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// TestCommandAloneListsCommands: bare COMMAND (redis-cli, go-redis's
// Command) answers the whole table, as Redis does.
func TestCommandAloneListsCommands(t *testing.T) {
	_, addr := startServer(t, Config{Service: newFake()})
	c := dial(t, addr)
	c.send(enc("COMMAND"))
	if got := c.reply(); !strings.HasPrefix(got, "*33\r\n*10\r\n") {
		t.Fatalf("COMMAND: %.80q…, want an array of 33 command entries", got)
	}
}
