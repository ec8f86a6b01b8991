package auth

import (
	"context"
	"testing"
)

// BenchmarkEntraAuthenticate validates a cached RS256 token: the cost on
// every gateway request that carries one.
func BenchmarkEntraAuthenticate(b *testing.B) {
	clock := newTestClock()
	idp := newTestIdP(b, clock, testKeys()[0])
	auth, _ := newTestEntra(b, idp, clock, nil)
	tok := idp.mint(b, userSpec())
	authOK(b, auth, tok)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res, err := auth.Authenticate(ctx, tok); err != nil || !res.OK {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkEntraAuthenticateParallel(b *testing.B) {
	clock := newTestClock()
	idp := newTestIdP(b, clock, testKeys()[0])
	auth, _ := newTestEntra(b, idp, clock, nil)
	tok := idp.mint(b, userSpec())
	authOK(b, auth, tok)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if res, err := auth.Authenticate(ctx, tok); err != nil || !res.OK {
				b.Error(res, err)
				return
			}
		}
	})
}
