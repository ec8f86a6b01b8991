package loganalytics

import (
	"bytes"
	"compress/gzip"
)

// gzipTail bounds what closing a flushed gzip stream adds: the "]", the
// final deflate block and the 8-byte trailer.
const gzipTail = 32

// packer builds gzip request bodies that hold as many rows as fit under a
// compressed size limit, compressing each row once. Compressing a whole
// body again for each try would cost several passes; instead a row is
// written only when it fits for certain: deflate never makes data much
// larger than it is, so the bytes flushed so far plus the raw size of what
// the compressor still holds bound the body. When the bound says no, a
// flush measures the body exactly and the room left is known again. Each
// flush leaves less room by the compression ratio, so a body takes a few
// dozen flushes and ends less than one row short of the limit. The size of
// every body returned is checked, never estimated.
type packer struct {
	limit int
	zw    *gzip.Writer
}

func newPacker(limit int) *packer {
	zw, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return &packer{limit: limit, zw: zw}
}

// worst bounds what n raw bytes add to a flushed deflate stream: stored
// blocks cost 5 bytes per 65535, a sync flush about as much.
func worst(n int) int { return n + n/1024 + 16 }

// compress returns the gzip body of the JSON array of rows.
func (p *packer) compress(rows []row) []byte {
	var buf bytes.Buffer
	p.zw.Reset(&buf)
	_, _ = p.zw.Write([]byte{'['})
	for i, r := range rows {
		if i > 0 {
			_, _ = p.zw.Write([]byte{','})
		}
		_, _ = p.zw.Write(r.b)
	}
	_, _ = p.zw.Write([]byte{']'})
	_ = p.zw.Close()
	return buf.Bytes()
}

// fits reports whether the row alone makes a body under the limit, and
// the size of that body when it had to be measured.
func (p *packer) fits(r row) (int, bool) {
	if worst(len(r.b))+gzipTail <= p.limit {
		return 0, true
	}
	n := len(p.compress([]row{r}))
	return n, n <= p.limit
}

// pack returns the gzip body of the longest prefix of rows (at least one
// row, which must fit alone) that it can fit for certain under the limit,
// and the number of rows in it.
func (p *packer) pack(rows []row) ([]byte, int) {
	var buf bytes.Buffer
	p.zw.Reset(&buf)
	_, _ = p.zw.Write([]byte{'['})
	budget := p.limit - gzipTail
	pending := worst(1) // bound of what the compressor holds unflushed
	n := 0
	for _, r := range rows {
		w := worst(len(r.b) + 1)
		if buf.Len()+pending+w > budget && n > 0 {
			if pending > 0 {
				_ = p.zw.Flush()
				pending = 0
			}
			if buf.Len()+w > budget {
				break
			}
		}
		if n > 0 {
			_, _ = p.zw.Write([]byte{','})
		}
		_, _ = p.zw.Write(r.b)
		pending += w
		n++
	}
	_, _ = p.zw.Write([]byte{']'})
	_ = p.zw.Close()
	if buf.Len() <= p.limit {
		return buf.Bytes(), n
	}
	return p.search(rows, 1, n) // only a lone first row over the bound gets here
}

// search finds the most rows in (lo, hi) whose body fits by compressing
// from scratch: rows[:lo] fitted when flushed, rows[:hi] did not.
func (p *packer) search(rows []row, lo, hi int) ([]byte, int) {
	lo = max(lo, 1)
	var body []byte
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if b := p.compress(rows[:mid]); len(b) <= p.limit {
			lo, body = mid, b
		} else {
			hi = mid
		}
	}
	if body == nil {
		body = p.compress(rows[:lo])
		for len(body) > p.limit && lo > 1 { // flush markers made rows[:lo] look larger than it is only in theory
			lo--
			body = p.compress(rows[:lo])
		}
	}
	return body, lo
}

// keepTogether moves the end n of a body of rows back to the start of the
// record it cuts, unless that record starts the body or is too large to
// take one request of its own anyway (then cutting it here loses nothing).
func (p *packer) keepTogether(rows []row, n int) int {
	if n >= len(rows) || rows[n].rec != rows[n-1].rec {
		return n
	}
	rec := rows[n].rec
	j := n - 1
	for j > 0 && rows[j-1].rec == rec {
		j--
	}
	if j == 0 {
		return n
	}
	size := 0
	for k := j; k < len(rows) && rows[k].rec == rec; k++ {
		size += worst(len(rows[k].b) + 1)
	}
	if size > p.limit-gzipTail {
		return n
	}
	return j
}
