package gateway

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// poolClock is a settable clock for pool tests.
type poolClock struct{ t time.Time }

func (c *poolClock) now() time.Time          { return c.t }
func (c *poolClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func testPool(bs ...*backend) (*pool, *poolClock) {
	c := &poolClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	return newPool(bs, c.now, func(int) int { return 0 }), c
}

func names(bs []*backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.name)
	}
	return out
}

func be(name string, priority, weight int, deployments ...string) *backend {
	if len(deployments) == 0 {
		deployments = []string{"*"}
	}
	return &backend{name: name, priority: priority, weight: weight, deployments: deployments}
}

func TestPoolOrderByPriorityAndDeployment(t *testing.T) {
	p, _ := testPool(be("east", 1, 1), be("west", 1, 1), be("mini-only", 1, 1, "gpt-4o-mini"), be("spare", 2, 1))
	got, wait := p.order("gpt-4o")
	if want := []string{"east", "west", "spare"}; !slices.Equal(names(got), want) || wait != 0 {
		t.Errorf("order = %v (wait %v), want %v", names(got), wait, want)
	}
	if got, _ := p.order("gpt-4o-mini"); len(got) != 4 {
		t.Errorf("gpt-4o-mini served by %v", names(got))
	}
	if got, _ := p.order("unknown-but-*"); len(got) != 3 {
		t.Errorf("a * backend serves every deployment: %v", names(got))
	}
}

func TestPoolWeights(t *testing.T) {
	heavy, light := be("heavy", 1, 3), be("light", 1, 1)
	p, _ := testPool(heavy, light)
	first := map[string]int{}
	for r := range 4 { // every draw of rand over the total weight 4
		p.rand = func(int) int { return r }
		got, _ := p.order("d")
		first[got[0].name]++
		if len(got) != 2 {
			t.Fatalf("order lost a backend: %v", names(got))
		}
	}
	if first["heavy"] != 3 || first["light"] != 1 {
		t.Errorf("first picks by draw = %v, want heavy 3 of 4", first)
	}
}

func TestPoolCoolDownOn429(t *testing.T) {
	east, west := be("east", 1, 1), be("west", 2, 1)
	p, clock := testPool(east, west)
	p.throttled(east, 20*time.Second)
	if got, _ := p.order("d"); !slices.Equal(names(got), []string{"west"}) {
		t.Errorf("during east's cool-down: %v", names(got))
	}
	clock.advance(19 * time.Second)
	if got, _ := p.order("d"); !slices.Equal(names(got), []string{"west"}) {
		t.Errorf("1s before the cool-down ends: %v", names(got))
	}
	clock.advance(time.Second)
	if got, _ := p.order("d"); !slices.Equal(names(got), []string{"east", "west"}) {
		t.Errorf("after the cool-down: %v", names(got))
	}
	// Both cooling: nothing to try, and how long until the first is back.
	p.throttled(east, 10*time.Second)
	p.throttled(west, time.Hour) // capped at 5m
	got, wait := p.order("d")
	if len(got) != 0 || wait != 10*time.Second {
		t.Errorf("all cooling: %v, wait %v", names(got), wait)
	}
	clock.advance(10 * time.Second)
	p.throttled(east, time.Hour)
	if _, wait := p.order("d"); wait != maxCoolDown-10*time.Second {
		t.Errorf("cool-down not capped: wait %v", wait)
	}
}

func TestPoolBreakerOpensAndHalfOpens(t *testing.T) {
	east, west := be("east", 1, 1), be("west", 2, 1)
	p, clock := testPool(east, west)
	for range breakerFailures - 1 {
		p.failed(east)
	}
	if got, _ := p.order("d"); got[0] != east {
		t.Fatalf("the breaker opened before %d failures", breakerFailures)
	}
	p.succeeded(east) // a success resets the count
	for range breakerFailures - 1 {
		p.failed(east)
	}
	if got, _ := p.order("d"); got[0] != east {
		t.Fatal("failures before a success still counted")
	}
	p.failed(east)
	if got, _ := p.order("d"); !slices.Equal(names(got), []string{"west"}) {
		t.Fatalf("open breaker still tried: %v", names(got))
	}
	clock.advance(breakerOpen)
	got, _ := p.order("d") // half-open: this call probes east
	if !slices.Equal(names(got), []string{"east", "west"}) {
		t.Fatalf("half-open: %v", names(got))
	}
	if got, _ := p.order("d"); !slices.Equal(names(got), []string{"west"}) {
		t.Errorf("a second call while the probe is in flight: %v", names(got))
	}
	p.failed(east) // the probe failed: open again
	clock.advance(breakerOpen - time.Second)
	if got, _ := p.order("d"); !slices.Equal(names(got), []string{"west"}) {
		t.Errorf("reopened breaker: %v", names(got))
	}
	clock.advance(time.Second)
	p.order("d") // probe
	p.succeeded(east)
	if got, _ := p.order("d"); !slices.Equal(names(got), []string{"east", "west"}) {
		t.Errorf("closed breaker: %v", names(got))
	}
}

func TestPoolAbandonedProbeFreesTheBackend(t *testing.T) {
	east := be("east", 1, 1)
	p, clock := testPool(east)
	for range breakerFailures {
		p.failed(east)
	}
	clock.advance(breakerOpen)
	p.order("d") // the probe's caller leaves
	if got, wait := p.order("d"); len(got) != 0 || wait != probeTimeout {
		t.Errorf("while the probe is in flight: %v, wait %v", names(got), wait)
	}
	p.abandoned(east)
	if got, _ := p.order("d"); len(got) != 1 {
		t.Errorf("an abandoned probe still blocks: %v", names(got))
	}
	clock.advance(probeTimeout) // and a probe that never reports expires
	if got, _ := p.order("d"); len(got) != 1 {
		t.Errorf("an expired probe still blocks: %v", names(got))
	}
}

func TestPoolConcurrentUse(t *testing.T) {
	bs := []*backend{be("a", 1, 2), be("b", 1, 1), be("c", 2, 1)}
	p := newPool(bs, time.Now, func(n int) int { return n - 1 })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				got, _ := p.order("d")
				for _, b := range got {
					switch i % 3 {
					case 0:
						p.failed(b)
					case 1:
						p.throttled(b, time.Millisecond)
					default:
						p.succeeded(b)
					}
				}
			}
		})
	}
	wg.Wait()
}
