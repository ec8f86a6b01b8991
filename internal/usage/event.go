package usage

// memberSpan returns the bytes of the object member whose key starts at
// keyAt and whose value ends at valEnd, together with the comma before
// it, or after it when it is the first member, so that cutting them leaves
// the object as it would be without the member. It returns 0, 0 when the
// offsets do not describe such a member.
func memberSpan(js string, keyAt, valEnd int) (start, end int) {
	if keyAt <= 0 || keyAt >= valEnd || valEnd > len(js) || js[keyAt] != '"' {
		return 0, 0
	}
	i := keyAt - 1
	for i > 0 && isSpace(js[i]) {
		i--
	}
	switch js[i] {
	case ',':
		return i, valEnd
	case '{':
		j := valEnd
		for j < len(js) && isSpace(js[j]) {
			j++
		}
		if j < len(js) && js[j] == ',' {
			return keyAt, j + 1
		}
		return keyAt, valEnd
	}
	return 0, 0
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r'
}
