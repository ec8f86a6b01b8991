package loganalytics

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// TestPackBodies packs rows of mixed sizes and compressibility under a
// small limit: every body decompresses to the JSON array of its rows, none
// is over the limit, all but the last are over 90% full.
func TestPackBodies(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var rows []row
	for i := range 1200 {
		n := 20 + rng.IntN(3000)
		b := make([]byte, 0, n+20)
		b = fmt.Appendf(b, `{"i":%d,"s":"`, i)
		for range n {
			if rng.IntN(3) == 0 {
				b = append(b, byte('a'+rng.IntN(26)))
			} else {
				b = append(b, 'x')
			}
		}
		rows = append(rows, row{b: append(b, `"}`...), rec: i})
	}
	const limit = 64 << 10
	p := newPacker(limit)
	var bodies int
	for rest := rows; len(rest) > 0; bodies++ {
		body, n := p.pack(rest)
		if n < 1 || len(body) > limit {
			t.Fatalf("body %d: %d rows in %d bytes", bodies, n, len(body))
		}
		if n < len(rest) && float64(len(body)) <= 0.9*limit {
			t.Errorf("body %d is %.1f%% full", bodies, 100*float64(len(body))/limit)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		want := []byte{'['}
		for i, r := range rest[:n] {
			if i > 0 {
				want = append(want, ',')
			}
			want = append(want, r.b...)
		}
		if want = append(want, ']'); !bytes.Equal(got, want) {
			t.Fatalf("body %d does not hold its %d rows", bodies, n)
		}
		rest = rest[n:]
	}
	if bodies < 5 {
		t.Errorf("%d bodies, want several", bodies)
	}
}

// TestKeepTogether moves a cut back to the start of the record it splits,
// unless the record starts the body or could not fit in one body anyway.
func TestKeepTogether(t *testing.T) {
	p := newPacker(4096)
	mk := func(recs ...int) []row {
		var rows []row
		for _, r := range recs {
			rows = append(rows, row{b: make([]byte, 100), rec: r})
		}
		return rows
	}
	big := mk(0, 1, 1, 1)
	for i := range 60 {
		big = append(big, row{b: make([]byte, 100), rec: 2 + i/50})
	}
	cases := []struct {
		name string
		rows []row
		n    int
		want int
	}{
		{"cut between records", mk(0, 1, 2, 3), 2, 2},
		{"cut inside a record", mk(0, 1, 1, 1, 2), 2, 1},
		{"record starts the body", mk(1, 1, 1, 2), 2, 2},
		{"all rows", mk(0, 1, 1), 3, 3},
		{"record larger than a body", big, 30, 30},
	}
	for _, c := range cases {
		if got := p.keepTogether(c.rows, c.n); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
