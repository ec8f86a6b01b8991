package dashboard

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// parsedPage is what a browser would make of an HTML page: the text a reader
// sees and the elements or attributes that would run or link script.
type parsedPage struct {
	text   string
	active []string // e.g. "<script>", "<img>", "onerror on <img>", "javascript: href on <a>"
}

// parsePage parses body as a browser does. Its text leaves out what is
// never shown: <title> (of the page, and the tooltips of SVG shapes) and
// the inside of a closed <details> but its <summary>.
func parsePage(t *testing.T, body string) parsedPage {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse page: %v", err)
	}
	var p parsedPage
	var text strings.Builder
	var walk func(n *html.Node, shown bool)
	walk = func(n *html.Node, shown bool) {
		switch n.Type {
		case html.TextNode:
			if shown {
				text.WriteString(n.Data)
			}
		case html.ElementNode:
			switch n.Data {
			case "script", "img", "iframe", "object", "embed", "base":
				p.active = append(p.active, "<"+n.Data+">")
			case "title":
				shown = false
			}
			for _, a := range n.Attr {
				v := strings.ToLower(strings.TrimSpace(a.Val))
				switch {
				case strings.HasPrefix(a.Key, "on"):
					p.active = append(p.active, a.Key+" on <"+n.Data+">")
				case strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "data:text/html"):
					p.active = append(p.active, v[:strings.IndexByte(v, ':')]+": "+a.Key+" on <"+n.Data+">")
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			childShown := shown
			if n.Type == html.ElementNode && n.Data == "details" && !hasAttr(n, "open") &&
				(c.Type != html.ElementNode || c.Data != "summary") {
				childShown = false
			}
			walk(c, childShown)
		}
	}
	walk(doc, true)
	p.text = text.String()
	return p
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

// TestHostileTextEscaped checks every view: each hostile field of the
// fixture is shown as the exact text it holds, and nothing on the page is
// a script, an image, an event handler or a javascript: link.
func TestHostileTextEscaped(t *testing.T) {
	h := newTestHandler(t, fixtureStore(t), Config{Loopback: true})
	for _, v := range views {
		t.Run(v.name, func(t *testing.T) {
			p := parsePage(t, get(t, h, v.path).Body.String())
			if len(p.active) > 0 {
				t.Errorf("GET %s: the page has %v", v.path, p.active)
			}
			for _, s := range v.hostile {
				if !strings.Contains(p.text, s) {
					t.Errorf("GET %s: %q is not shown as text", v.path, s)
				}
			}
		})
	}
}

// tableRows returns the text of each cell of the first table.list of body,
// row by row, the header first.
func tableRows(t *testing.T, body string) [][]string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse page: %v", err)
	}
	var table *html.Node
	var find func(n *html.Node)
	find = func(n *html.Node) {
		if table != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "table" {
			for _, a := range n.Attr {
				if a.Key == "class" && strings.Contains(" "+a.Val+" ", " list ") {
					table = n
					return
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if table == nil {
		t.Fatal("no table.list in the page")
	}
	var rows [][]string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			var row []string
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.ElementNode && (c.Data == "td" || c.Data == "th") {
					row = append(row, strings.TrimSpace(textOf(c)))
				}
			}
			rows = append(rows, row)
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(table)
	return rows
}

func textOf(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(textOf(c))
	}
	return b.String()
}
