package ratelimit_test

import (
	"testing"

	"github.com/tapline/tapline/internal/ratelimit"
)

func TestRulesFor(t *testing.T) {
	def := ratelimit.Limits{RequestsPerMinute: 120, TokensPerMinute: 100000, TokensPerDay: 2000000}
	bot := ratelimit.Limits{RequestsPerMinute: 60, TokensPerMinute: 40000}
	admins := ratelimit.Limits{RequestsPerMinute: 600}
	readers := ratelimit.Limits{TokensPerMonth: 1000}
	rules := ratelimit.Rules{
		Default: def,
		Keys:    map[string]ratelimit.Limits{"build-bot": bot},
		Groups:  []ratelimit.Group{{Role: "Tapline.Admin", Limits: admins}, {Role: "Tapline.Reader", Limits: readers}},
	}
	tests := []struct {
		name    string
		keyName string
		roles   []string
		want    ratelimit.Limits
	}{
		{"known key", "build-bot", nil, bot},
		{"key wins over roles", "build-bot", []string{"Tapline.Admin"}, bot},
		{"unknown key gets default", "other", nil, def},
		{"unknown key with a role gets the group", "other", []string{"Tapline.Reader"}, readers},
		{"token caller with a role", "", []string{"Tapline.Reader"}, readers},
		{"first group in config order wins", "", []string{"Tapline.Reader", "Tapline.Admin"}, admins},
		{"roles without a group get default", "", []string{"Something.Else"}, def},
		{"nothing gets default", "", nil, def},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rules.For(tc.keyName, tc.roles); got != tc.want {
				t.Errorf("For(%q, %v) = %+v, want %+v", tc.keyName, tc.roles, got, tc.want)
			}
		})
	}
	if got := (ratelimit.Rules{}).For("x", []string{"y"}); got != (ratelimit.Limits{}) {
		t.Errorf("empty rules = %+v, want unlimited", got)
	}
}
