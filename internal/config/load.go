package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a configuration, at a field path such as
// "gateway.backends[0].url".
type Problem struct {
	Path    string
	Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// Error lists every problem found in a configuration.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s: ", e.File)
	}
	fmt.Fprintf(&b, "%d problem(s) in configuration:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// IsInvalid reports whether err says the configuration is bad (as opposed
// to a runtime failure): the command line exits 2 for these.
func IsInvalid(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}

// Load reads the YAML file at path, expands ${ENV} references in its values
// with lookup (os.LookupEnv when nil), rejects unknown keys, applies defaults
// and validates. Every problem is reported at once, as an *Error.
func Load(path string, lookup func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Problems: []Problem{{Path: "(file)", Message: err.Error()}}}
	}
	cfg, err := Parse(data, lookup)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	return cfg, err
}

// Parse is Load for YAML already in memory.
func Parse(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Problems: []Problem{{Path: "(yaml)", Message: err.Error()}}}
	}
	var probs []Problem
	if len(root.Content) > 0 {
		probs = expandEnv(root.Content[0], "", lookup, probs)
		probs = checkKeys(root.Content[0], reflect.TypeOf(Config{}), "", probs)
	}
	cfg := &Config{}
	if len(probs) == 0 && len(root.Content) > 0 {
		if err := root.Content[0].Decode(cfg); err != nil {
			probs = append(probs, decodeProblems(err)...)
		}
	}
	if len(probs) > 0 {
		return nil, &Error{Problems: probs}
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} in scalar values. A reference to an unset
// variable is a problem, named by its field path and never by its value.
func expandEnv(n *yaml.Node, path string, lookup func(string) (string, bool), probs []Problem) []Problem {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return probs
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := lookup(name)
			if !ok {
				probs = append(probs, Problem{Path: path, Message: "environment variable " + name + " is not set"})
			}
			return v
		})
		if n.Style == 0 {
			n.Tag = "" // plain scalars re-resolve after expansion (numbers, booleans)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			probs = expandEnv(n.Content[i+1], join(path, n.Content[i].Value), lookup, probs)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			probs = expandEnv(c, fmt.Sprintf("%s[%d]", path, i), lookup, probs)
		}
	}
	return probs
}

// checkKeys reports every mapping key that has no field in t, with its path
// and line, so a typo never silently turns a setting off.
func checkKeys(n *yaml.Node, t reflect.Type, path string, probs []Problem) []Problem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeOf(Duration(0)):
		if _, err := ParseDuration(n.Value); err != nil {
			probs = append(probs, Problem{Path: path, Message: err.Error()})
		}
	case t == reflect.TypeOf(ByteSize(0)):
		if _, err := ParseByteSize(n.Value); err != nil {
			probs = append(probs, Problem{Path: path, Message: err.Error()})
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				probs = append(probs, Problem{Path: join(path, k.Value),
					Message: fmt.Sprintf("unknown key (line %d); known keys here: %s", k.Line, knownKeys(fields))})
				continue
			}
			probs = checkKeys(n.Content[i+1], ft, join(path, k.Value), probs)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			probs = checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), probs)
		}
	}
	return probs
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func knownKeys(fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// decodeProblems turns yaml.v3's type errors ("line 3: cannot unmarshal
// !!str `x` into int") into problems; yaml.v3 does not give field paths here,
// so the line stands in for them.
func decodeProblems(err error) []Problem {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make([]Problem, 0, len(te.Errors))
		for _, e := range te.Errors {
			out = append(out, Problem{Path: "(yaml)", Message: e})
		}
		return out
	}
	return []Problem{{Path: "(yaml)", Message: err.Error()}}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Marshal renders cfg as YAML (used to show the effective configuration).
func Marshal(cfg *Config) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b.Bytes(), nil
}
