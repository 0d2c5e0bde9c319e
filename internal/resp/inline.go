package resp

// ParseInt parses a decimal as Redis's string2ll does, so that the same
// headers and integer arguments are accepted: an optional '-', no '+', no
// spaces, no leading zeros, no "-0", nothing that overflows int64.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v-1) - 1, true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// isSpace is C's isspace in the "C" locale, which sdssplitargs uses.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// splitArgs splits an inline command line as Redis's sdssplitargs does and
// appends each argument's start and end to offs. The unescaped arguments are
// written over line itself: an escape is never shorter than what it stands
// for, so the write position never passes the read position and no copy is
// needed. Words are separated by spaces; "..." takes \n \r \t \b \a \xHH and
// \<any> escapes, '...' takes \'; a closing quote must be followed by a space
// or the end of the line; a quote opened inside a word continues that word.
func splitArgs(line []byte, offs []int) ([]int, error) {
	p, out := 0, 0
	n := len(line)
	for {
		for p < n && isSpace(line[p]) {
			p++
		}
		if p >= n {
			return offs, nil
		}
		start := out
		inq, insq := false, false
	word:
		for {
			switch {
			case inq:
				if p >= n {
					return offs, errUnbalanced
				}
				c := line[p]
				switch {
				case c == '\\' && p+3 < n && line[p+1] == 'x' && isHex(line[p+2]) && isHex(line[p+3]):
					line[out] = hexVal(line[p+2])<<4 | hexVal(line[p+3])
					out++
					p += 4
				case c == '\\' && p+1 < n:
					p++
					switch line[p] {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					default:
						c = line[p]
					}
					line[out] = c
					out++
					p++
				case c == '"':
					if p+1 < n && !isSpace(line[p+1]) {
						return offs, errUnbalanced
					}
					p++
					break word
				default:
					line[out] = c
					out++
					p++
				}
			case insq:
				if p >= n {
					return offs, errUnbalanced
				}
				c := line[p]
				switch {
				case c == '\\' && p+1 < n && line[p+1] == '\'':
					line[out] = '\''
					out++
					p += 2
				case c == '\'':
					if p+1 < n && !isSpace(line[p+1]) {
						return offs, errUnbalanced
					}
					p++
					break word
				default:
					line[out] = c
					out++
					p++
				}
			default:
				if p >= n {
					break word
				}
				c := line[p]
				switch c {
				case ' ', '\n', '\r', '\t':
					p++
					break word
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					line[out] = c
					out++
				}
				p++
			}
		}
		offs = append(offs, start, out)
	}
}
