package respserver

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/resp"
)

// RedisVersion is the Redis API level served: the commands and replies
// follow Redis 7.2.
const RedisVersion = "7.2.0"

// cmdHello: HELLO [protover [AUTH username password] [SETNAME clientname]].
func cmdHello(c *conn, cmd *command, args [][]byte) {
	ver := int64(c.w.Protocol())
	if len(args) >= 2 {
		v, ok := resp.ParseInt(args[1])
		if !ok {
			c.fail("ERR Protocol version is not an integer or out of range")
			return
		}
		if v < 2 || v > 3 {
			c.fail("NOPROTO unsupported protocol version")
			return
		}
		ver = v
	}
	var user, pass, name []byte
	haveAuth, haveName := false, false
	for j := 2; j < len(args); j++ {
		more := len(args) - j - 1
		switch {
		case equalFold(args[j], "auth") && more >= 2:
			user, pass, haveAuth = args[j+1], args[j+2], true
			j += 2
		case equalFold(args[j], "setname") && more >= 1:
			name, haveName = args[j+1], true
			j++
		default:
			c.fail("ERR Syntax error in HELLO option '" + trunc(args[j], 128) + "'")
			return
		}
	}
	if haveAuth && !c.authenticate(user, pass) {
		return
	}
	if !c.authed {
		c.fail("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if haveName {
		if !validName(name) {
			c.fail(msgBadName)
			return
		}
		c.name = string(name)
	}
	c.w.SetProtocol(int(ver))
	c.w.Map(8)
	c.w.BulkString("server")
	c.w.BulkString("redis")
	c.w.BulkString("version")
	c.w.BulkString(RedisVersion)
	c.w.BulkString("dcounter_version")
	c.w.BulkString(c.s.cfg.Version)
	c.w.BulkString("proto")
	c.w.Int(ver)
	c.w.BulkString("id")
	c.w.Int(c.id)
	c.w.BulkString("mode")
	c.w.BulkString("standalone")
	c.w.BulkString("role")
	c.w.BulkString("master")
	c.w.BulkString("modules")
	c.w.Array(0)
}

// --- CLIENT ---

func cmdClientSetName(c *conn, cmd *command, args [][]byte) {
	if !validName(args[2]) {
		c.fail(msgBadName)
		return
	}
	c.name = string(args[2])
	c.w.SimpleString("OK")
}

func cmdClientGetName(c *conn, cmd *command, args [][]byte) {
	if c.name == "" {
		c.w.Null()
		return
	}
	c.w.BulkString(c.name)
}

func cmdClientID(c *conn, cmd *command, args [][]byte) { c.w.Int(c.id) }

func cmdClientSetInfo(c *conn, cmd *command, args [][]byte) {
	i := 0
	switch {
	case equalFold(args[2], "lib-name"):
	case equalFold(args[2], "lib-ver"):
		i = 1
	default:
		c.fail("ERR Unrecognized option '" + trunc(args[2], 128) + "'")
		return
	}
	if !validName(args[3]) {
		c.fail("ERR " + strings.ToLower(string(args[2])) + " cannot contain spaces, newlines or special characters.")
		return
	}
	c.lib[i] = string(args[3])
	c.w.SimpleString("OK")
}

// cmdClientInfo answers the subset of Redis's CLIENT INFO line that means
// something here, in Redis's format.
func cmdClientInfo(c *conn, cmd *command, args [][]byte) {
	multi := -1
	if c.multi {
		multi = len(c.queue)
	}
	var b strings.Builder
	b.WriteString("id=" + strconv.FormatInt(c.id, 10))
	b.WriteString(" addr=" + c.nc.RemoteAddr().String())
	b.WriteString(" laddr=" + c.nc.LocalAddr().String())
	b.WriteString(" fd=-1 name=" + c.name)
	b.WriteString(" age=" + strconv.FormatInt(int64(time.Since(c.connected)/time.Second), 10))
	b.WriteString(" idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=" + strconv.Itoa(multi))
	b.WriteString(" watch=0 cmd=client|info user=" + c.userName())
	b.WriteString(" redir=-1 resp=" + strconv.Itoa(c.w.Protocol()))
	b.WriteString(" lib-name=" + c.lib[0] + " lib-ver=" + c.lib[1] + "\n")
	c.w.Verbatim(b.String())
}

// helps are the HELP subcommands' answers.
var helps = map[string][]string{
	"client|help": {
		"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"GETNAME",
		"    Return the name of the current connection.",
		"ID",
		"    Return the ID of the current connection.",
		"INFO",
		"    Return information about the current client connection.",
		"SETINFO <option> <value>",
		"    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
		"SETNAME <name>",
		"    Assign the name <name> to the current connection.",
		"HELP",
		"    Print this help.",
	},
	"command|help": {
		"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"(no subcommand)",
		"    Return details about all commands.",
		"COUNT",
		"    Return the total number of commands.",
		"DOCS [<command-name> ...]",
		"    Return documentary information (none: see dcounter's README).",
		"INFO [<command-name> ...]",
		"    Return details about the given commands, or all of them.",
		"LIST [FILTERBY PATTERN <pattern>]",
		"    Return the names of the commands.",
		"HELP",
		"    Print this help.",
	},
	"config|help": {
		"CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"GET <pattern>",
		"    Return parameters matching the glob-like <pattern> and their values.",
		"    (dcounter answers save, appendonly, appendfsync, databases, maxmemory;",
		"    the node is configured with its flags.)",
		"HELP",
		"    Print this help.",
	},
}

func cmdHelp(c *conn, cmd *command, args [][]byte) {
	lines := helps[cmd.name]
	c.w.Array(len(lines))
	for _, l := range lines {
		c.w.SimpleString(l)
	}
}

// --- INFO ---

// cmdInfo: INFO [section ...]; "default", "all", "everything" or none give
// every section, an unknown one nothing.
func cmdInfo(c *conn, cmd *command, args [][]byte) {
	want := map[string]bool{}
	all := len(args) == 1
	for _, a := range args[1:] {
		s := strings.ToLower(string(a))
		switch s {
		case "default", "all", "everything":
			all = true
		}
		want[s] = true
	}
	var b strings.Builder
	section := func(name string, lines ...string) {
		if !all && !want[strings.ToLower(name)] {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + name + "\r\n")
		for _, l := range lines {
			b.WriteString(l + "\r\n")
		}
	}
	section("Server",
		"redis_version:"+RedisVersion,
		"dcounter_version:"+c.s.cfg.Version,
		"redis_mode:standalone",
		"process_id:"+strconv.Itoa(os.Getpid()),
		"tcp_port:"+strconv.FormatInt(c.s.port.Load(), 10),
		"uptime_in_seconds:"+strconv.FormatInt(int64(time.Since(c.s.started)/time.Second), 10),
	)
	section("Clients", "connected_clients:"+strconv.Itoa(c.s.Clients()))
	if all || want["keyspace"] || want["dcounter"] {
		_, h := c.s.svc.Health(c.ctx)
		if h.LiveKeys > 0 {
			section("Keyspace", "db0:keys="+strconv.Itoa(h.LiveKeys)+",expires=0,avg_ttl=0")
		} else {
			section("Keyspace")
		}
		section("dcounter",
			"replica_id:"+h.ID,
			"name:"+h.Name,
			"cluster:"+h.Cluster,
			"status:"+h.Status,
			"members:"+strconv.Itoa(h.Members),
			"peers:"+strconv.Itoa(h.Peers),
			"keys_held:"+strconv.Itoa(h.Keys),
			"live_keys:"+strconv.Itoa(h.LiveKeys),
			"pending_keys:"+strconv.Itoa(h.PendingKeys),
			"clock_offset_max_ms:"+strconv.FormatInt(h.ClockOffsetMax.Milliseconds(), 10),
			"durability:"+h.Durability,
		)
	}
	c.w.Verbatim(b.String())
}

// --- CONFIG ---

// configParams are what CONFIG GET answers: the parameters redis-benchmark
// and common clients ask for, with values that describe the node.
var configParams = []struct {
	name  string
	value func(durability string) string
}{
	{"save", func(string) string { return "" }},
	{"appendonly", func(d string) string {
		if d == "fsync=always" {
			return "yes"
		}
		return "no"
	}},
	{"appendfsync", func(d string) string {
		switch {
		case d == "fsync=always":
			return "always"
		case strings.HasPrefix(d, "fsync="):
			return "everysec"
		}
		return "no"
	}},
	{"databases", func(string) string { return "1" }},
	{"maxmemory", func(string) string { return "0" }},
}

func cmdConfigGet(c *conn, cmd *command, args [][]byte) {
	var match []int
	for i, p := range configParams {
		for _, pat := range args[2:] {
			if globMatch(pat, []byte(p.name), true) {
				match = append(match, i)
				break
			}
		}
	}
	durability := ""
	if len(match) > 0 {
		_, h := c.s.svc.Health(c.ctx)
		durability = h.Durability
	}
	c.w.Map(len(match))
	for _, i := range match {
		c.w.BulkString(configParams[i].name)
		c.w.BulkString(configParams[i].value(durability))
	}
}

func cmdConfigUnsupported(c *conn, cmd *command, args [][]byte) {
	c.fail("ERR CONFIG " + strings.ToUpper(strings.TrimPrefix(cmd.name, "config|")) + " is not supported by dcounter: configure the node with its flags")
}

// --- COMMAND ---

func cmdCommand(c *conn, cmd *command, args [][]byte) {
	c.w.Array(len(served))
	for _, s := range served {
		c.commandInfo(s)
	}
}

func cmdCommandCount(c *conn, cmd *command, args [][]byte) { c.w.Int(int64(len(served))) }

func cmdCommandInfo(c *conn, cmd *command, args [][]byte) {
	if len(args) == 2 {
		cmdCommand(c, cmd, args)
		return
	}
	c.w.Array(len(args) - 2)
	for _, a := range args[2:] {
		if s := findServed(a); s != nil {
			c.commandInfo(s)
		} else {
			c.w.Null()
		}
	}
}

// cmdCommandDocs answers an empty map: the documentation is the README's.
func cmdCommandDocs(c *conn, cmd *command, args [][]byte) { c.w.Map(0) }

// cmdCommandList: COMMAND LIST [FILTERBY PATTERN pattern].
func cmdCommandList(c *conn, cmd *command, args [][]byte) {
	var pat []byte
	switch {
	case len(args) == 2:
	case len(args) == 5 && equalFold(args[2], "filterby") && equalFold(args[3], "pattern"):
		pat = args[4]
	default:
		c.fail(msgSyntax)
		return
	}
	var names []string
	for _, s := range served {
		for _, n := range append([]*command{s}, s.subList...) {
			if pat == nil || globMatch(pat, []byte(n.name), true) {
				names = append(names, n.name)
			}
		}
	}
	c.w.Array(len(names))
	for _, n := range names {
		c.w.BulkString(n)
	}
}

// findServed returns the served command (or subcommand, "client|id")
// named b.
func findServed(b []byte) *command {
	name := strings.ToLower(string(b))
	main, sub, isSub := strings.Cut(name, "|")
	cmd := commands[main]
	if cmd == nil || cmd.refused != "" {
		return nil
	}
	if isSub {
		return cmd.subs[sub]
	}
	return cmd
}

// commandInfo writes one Redis 7 command-info entry: name, arity, flags,
// first key, last key, step, ACL categories, tips, key specs, subcommands.
func (c *conn) commandInfo(cmd *command) {
	c.w.Array(10)
	c.w.BulkString(cmd.name)
	c.w.Int(int64(cmd.arity))
	c.w.Set(len(cmd.flags))
	for _, f := range cmd.flags {
		c.w.SimpleString(f)
	}
	c.w.Int(int64(cmd.first))
	c.w.Int(int64(cmd.last))
	c.w.Int(int64(cmd.step))
	c.w.Set(len(cmd.acl))
	for _, a := range cmd.acl {
		c.w.SimpleString(a)
	}
	c.w.Set(0)   // tips
	c.w.Array(0) // key specs
	c.w.Array(len(cmd.subList))
	for _, s := range cmd.subList {
		c.commandInfo(s)
	}
}
