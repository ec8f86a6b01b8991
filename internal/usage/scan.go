package usage

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner reads JSON text in one pass, for the hot path: a stream chunk is
// read once, values nobody asked for are skipped without being decoded,
// and strings are decoded only when kept. (gjson re-scans a nested value
// at every level it is visited, and validating a chunk first costs as much
// again; together they came to about 2 µs for a 600-byte chunk.)
//
// The structure it walks (objects, arrays, members, commas) is checked
// strictly; the inside of skipped values only for string and bracket
// matching, and numbers and literals loosely. After any error, failed is
// set and every method does nothing, so callers check failed once at the
// end.
type scanner struct {
	s      string
	i      int
	failed bool
}

// maxDepth bounds the nesting of skipped values (one bit each in a uint64).
const maxDepth = 64

func (sc *scanner) fail() {
	sc.failed = true
	sc.i = len(sc.s)
}

func (sc *scanner) ws() {
	// Chunks have no whitespace: one comparison decides the common case.
	for sc.i < len(sc.s) && sc.s[sc.i] <= ' ' {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// peek returns the first byte of the next value, 0 at the end.
func (sc *scanner) peek() byte {
	sc.ws()
	if sc.i >= len(sc.s) {
		return 0
	}
	return sc.s[sc.i]
}

// object calls member for each member of the object that comes next, with
// the scanner at the member's value, which member must consume (read or
// skip). key is the raw key, escapes not decoded; keyAt is the offset of
// its opening quote. It reports whether there was an object; a value of
// another type is skipped.
func (sc *scanner) object(member func(key string, keyAt int)) bool {
	if sc.peek() != '{' {
		sc.skip()
		return false
	}
	sc.i++
	if sc.peek() == '}' {
		sc.i++
		return true
	}
	for !sc.failed {
		if sc.peek() != '"' {
			sc.fail()
			return false
		}
		keyAt := sc.i
		key, _ := sc.rawString()
		if sc.peek() != ':' {
			sc.fail()
			return false
		}
		sc.i++
		member(key, keyAt)
		switch sc.peek() {
		case ',':
			sc.i++
		case '}':
			sc.i++
			return true
		default:
			sc.fail()
		}
	}
	return false
}

// array calls elem for each element of the array that comes next, with
// the scanner at the element, which elem must consume. It returns the
// number of elements, or -1 when the value is not an array (it is
// skipped).
func (sc *scanner) array(elem func(i int)) int {
	if sc.peek() != '[' {
		sc.skip()
		return -1
	}
	sc.i++
	if sc.peek() == ']' {
		sc.i++
		return 0
	}
	for n := 0; !sc.failed; n++ {
		if sc.peek() == 0 {
			sc.fail()
			break
		}
		elem(n)
		switch sc.peek() {
		case ',':
			sc.i++
		case ']':
			sc.i++
			return n + 1
		default:
			sc.fail()
		}
	}
	return -1
}

// skip passes over the next value.
func (sc *scanner) skip() {
	switch sc.peek() {
	case 0:
		sc.fail()
	case '"':
		sc.rawString()
	case '{', '[':
		sc.skipNested()
	default:
		sc.scalar()
	}
}

// span skips the next value and returns its raw text.
func (sc *scanner) span() string {
	sc.ws()
	start := sc.i
	sc.skip()
	if sc.failed {
		return ""
	}
	return sc.s[start:sc.i]
}

// objectSpan skips the next value, which must be an object, and returns
// its raw text and whether a true literal occurs in it.
func (sc *scanner) objectSpan() (raw string, sawTrue, ok bool) {
	if sc.peek() != '{' {
		sc.skip()
		return "", false, false
	}
	start := sc.i
	sawTrue = sc.skipNested()
	if sc.failed {
		return "", false, false
	}
	return sc.s[start:sc.i], sawTrue, true
}

// skipNested passes over an object or array, matching brackets and
// skipping strings, without looking at anything else. It reports whether
// it saw a true literal.
func (sc *scanner) skipNested() (sawTrue bool) {
	s := sc.s
	var stack uint64 // bit d set: level d is an object
	depth := 0
	for i := sc.i; i < len(s); i++ {
		for i < len(s) && !special[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		switch c := s[i]; c {
		case '"':
			end, _ := stringEnd(s, i+1)
			if end < 0 {
				sc.fail()
				return false
			}
			i = end - 1
		case 't':
			sawTrue = true
		case '{', '[':
			if depth == maxDepth {
				sc.fail()
				return false
			}
			if c == '{' {
				stack |= 1 << depth
			} else {
				stack &^= 1 << depth
			}
			depth++
		case '}', ']':
			if depth == 0 || (c == '}') != (stack&(1<<(depth-1)) != 0) {
				sc.fail()
				return false
			}
			depth--
			if depth == 0 {
				sc.i = i + 1
				return sawTrue
			}
		}
	}
	sc.fail()
	return false
}

// special marks the bytes skipNested stops at.
var special = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true, 't': true}

// stringEnd returns the offset just past the closing quote of a string
// whose contents start at i, or -1 if it is not closed, and whether the
// string has escapes. JSON strings in responses are mostly short, where a
// plain loop beats IndexByte.
func stringEnd(s string, i int) (end int, escaped bool) {
	for {
		for i < len(s) && !stringStop[s[i]] {
			i++
		}
		if i >= len(s) {
			return -1, escaped
		}
		if s[i] == '"' {
			return i + 1, escaped
		}
		i += 2 // a backslash and the byte it escapes
		escaped = true
	}
}

// stringStop marks the bytes stringEnd stops at.
var stringStop = [256]bool{'"': true, '\\': true}

// rawString reads the string at the scanner's position and returns its
// contents without the quotes and escapes not decoded, and whether it has
// escapes.
func (sc *scanner) rawString() (raw string, escaped bool) {
	// Every caller has peeked: no whitespace to skip.
	if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
		sc.fail()
		return "", false
	}
	end, escaped := stringEnd(sc.s, sc.i+1)
	if end < 0 {
		sc.fail()
		return "", false
	}
	raw = sc.s[sc.i+1 : end-1]
	sc.i = end
	return raw, escaped
}

// str reads the next value if it is a string. Otherwise it skips it and
// ok is false.
func (sc *scanner) str() (raw string, escaped, ok bool) {
	if sc.peek() != '"' {
		sc.skip()
		return "", false, false
	}
	raw, escaped = sc.rawString()
	return raw, escaped, !sc.failed
}

// scalar reads a number or literal and returns its text.
func (sc *scanner) scalar() string {
	sc.ws()
	start := sc.i
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r', ':', '"', '{', '[':
			if sc.i == start {
				sc.fail()
				return ""
			}
			return sc.s[start:sc.i]
		}
		sc.i++
	}
	if sc.i == start {
		sc.fail()
	}
	return sc.s[start:sc.i]
}

// literal reads the next value and returns what it is: 't' for true, 'f'
// for false, 'n' for null, 0 for anything else (which is skipped).
func (sc *scanner) literal() byte {
	switch c := sc.peek(); c {
	case 't', 'f', 'n':
		switch sc.scalar() {
		case "true":
			return 't'
		case "false":
			return 'f'
		case "null":
			return 'n'
		}
		return 0
	}
	sc.skip()
	return 0
}

// int reads the next value if it is a number, as an int (a fraction is
// truncated). Otherwise it skips it and ok is false.
func (sc *scanner) int() (n int, ok bool) {
	c := sc.peek()
	if c != '-' && (c < '0' || c > '9') {
		sc.skip()
		return 0, false
	}
	return parseInt(sc.scalar())
}

// number reads the next value if it is a number and returns its text.
func (sc *scanner) number() (string, bool) {
	c := sc.peek()
	if c != '-' && (c < '0' || c > '9') {
		sc.skip()
		return "", false
	}
	t := sc.scalar()
	_, ok := parseInt(t)
	return t, ok
}

func parseInt(t string) (int, bool) {
	if len(t) > 0 && len(t) < 19 {
		n, neg, i := 0, t[0] == '-', 0
		if neg {
			i = 1
		}
		for ; i < len(t) && t[i] >= '0' && t[i] <= '9'; i++ {
			n = n*10 + int(t[i]-'0')
		}
		if i == len(t) && (!neg || len(t) > 1) {
			if neg {
				n = -n
			}
			return n, true
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil && f == 0 {
		return 0, false
	}
	switch {
	case f >= 1<<62:
		return 1 << 62, true
	case f <= -(1 << 62):
		return -(1 << 62), true
	}
	return int(f), true
}

// text decodes a raw JSON string (from str) into a new string.
func text(raw string, escaped bool) string {
	if !escaped {
		return strings.Clone(raw)
	}
	return string(unescape(nil, raw))
}

// unescape appends the decoded raw JSON string contents to dst. Invalid
// escapes are kept as they are; unpaired surrogates become U+FFFD, as
// encoding/json does.
func unescape(dst []byte, raw string) []byte {
	for {
		i := strings.IndexByte(raw, '\\')
		if i < 0 || i+1 >= len(raw) {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		raw = raw[i:]
		switch c := raw[1]; c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := decodeU(raw)
			if n == 0 {
				dst = append(dst, raw[:2]...)
				raw = raw[2:]
				continue
			}
			dst = utf8.AppendRune(dst, r)
			raw = raw[n:]
			continue
		default:
			dst = append(dst, raw[:2]...)
		}
		raw = raw[2:]
	}
}

// decodeU decodes a \uXXXX escape at the start of s, with its low
// surrogate if it has one. It returns the rune and the bytes used, 0 if s
// does not start with a valid escape.
func decodeU(s string) (rune, int) {
	r := hex4(s)
	if r < 0 {
		return 0, 0
	}
	if !utf16.IsSurrogate(r) {
		return r, 6
	}
	if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
		if r2 := hex4(s[6:]); r2 >= 0 {
			if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
				return d, 12
			}
		}
	}
	return utf8.RuneError, 6
}

func hex4(s string) rune {
	if len(s) < 6 {
		return -1
	}
	var r rune
	for _, c := range []byte(s[2:6]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
