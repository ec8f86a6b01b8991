package ratelimit

import "slices"

// Rules say which Limits apply to a principal: those of its key, else those
// of the first group (in configuration order) whose role the principal
// holds, else Default. An entry replaces Default entirely: a field left zero
// in it is unlimited, not inherited.
type Rules struct {
	Default Limits
	// Keys are the limits of API keys, by key name.
	Keys map[string]Limits
	// Groups are the limits of Entra app roles (or groups emitted as roles).
	Groups []Group
}

// Group is the limits of the principals holding Role.
type Group struct {
	Role   string
	Limits Limits
}

// For returns the limits of the principal with this key name ("" for a
// token caller) and these roles.
func (r Rules) For(keyName string, roles []string) Limits {
	if keyName != "" {
		if l, ok := r.Keys[keyName]; ok {
			return l
		}
	}
	for _, g := range r.Groups {
		if slices.Contains(roles, g.Role) {
			return g.Limits
		}
	}
	return r.Default
}
