// Package route decides which destinations a finding goes to. A route matches on minimum
// severity, detector, provider, owner, team and identity pattern; every condition that is set
// must hold, and a list matches when any element does. A finding goes to the union of the
// destinations of every route it matches.
package route

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Match is the condition of a route. The zero Match matches every finding.
type Match struct {
	// MinSeverity is the lowest severity that matches: info, low, medium, high or critical.
	MinSeverity string `yaml:"min_severity"`
	// Detectors are detector names or patterns (posture_*).
	Detectors []string `yaml:"detectors"`
	// Providers are aws, gcp or k8s.
	Providers []string `yaml:"providers"`
	// Owners and Teams are compared without regard to case. "-" matches a finding whose
	// identity has no owner (or team).
	Owners []string `yaml:"owners"`
	Teams  []string `yaml:"teams"`
	// Identities are patterns on the canonical identity id, where * matches any run of
	// characters (including / and :) and ? one character:
	// "aws:arn:aws:iam::*:role/ci-*", "k8s:prod:system:serviceaccount:kube-system:*".
	Identities []string `yaml:"identities"`
}

// Route sends the findings it matches to destinations, named as in the destinations list.
type Route struct {
	Name         string   `yaml:"name"`
	Match        Match    `yaml:"match"`
	Destinations []string `yaml:"destinations"`
}

// Router evaluates routes. It is immutable and safe for concurrent use.
type Router struct {
	routes []compiled
}

type compiled struct {
	name         string
	minSeverity  events.Severity
	detectors    []string
	providers    map[events.Provider]bool
	owners       map[string]bool
	teams        map[string]bool
	identities   []string
	destinations []string
}

// New checks the routes against the destination names that exist.
func New(routes []Route, destinationExists func(string) bool) (*Router, error) {
	r := &Router{}
	names := map[string]bool{}
	for i, rt := range routes {
		label := rt.Name
		if label == "" {
			label = fmt.Sprintf("#%d", i+1)
		} else if names[label] {
			return nil, fmt.Errorf("route %s: duplicate name", label)
		}
		names[label] = true
		c, err := compile(rt, destinationExists)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", label, err)
		}
		c.name = label
		r.routes = append(r.routes, c)
	}
	return r, nil
}

func compile(rt Route, exists func(string) bool) (compiled, error) {
	c := compiled{detectors: rt.Match.Detectors, identities: rt.Match.Identities}
	if len(rt.Destinations) == 0 {
		return c, errors.New("no destinations")
	}
	seen := map[string]bool{}
	for _, d := range rt.Destinations {
		if !exists(d) {
			return c, fmt.Errorf("unknown destination %q", d)
		}
		if !seen[d] {
			seen[d] = true
			c.destinations = append(c.destinations, d)
		}
	}
	if rt.Match.MinSeverity != "" {
		sev, err := events.ParseSeverity(rt.Match.MinSeverity)
		if err != nil {
			return c, err
		}
		c.minSeverity = sev
	}
	if len(rt.Match.Providers) > 0 {
		c.providers = map[events.Provider]bool{}
		for _, p := range rt.Match.Providers {
			prov, err := events.ParseProvider(p)
			if err != nil {
				return c, err
			}
			c.providers[prov] = true
		}
	}
	c.owners = fold(rt.Match.Owners)
	c.teams = fold(rt.Match.Teams)
	for _, p := range append(append([]string(nil), rt.Match.Detectors...), rt.Match.Identities...) {
		if strings.TrimSpace(p) == "" {
			return c, errors.New("empty detector or identity pattern")
		}
	}
	return c, nil
}

func fold(xs []string) map[string]bool {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		if x == "-" {
			m[""] = true
			continue
		}
		m[strings.ToLower(x)] = true
	}
	return m
}

// Destinations returns the destinations f goes to, in route order, each once, and the names
// of the routes that matched.
func (r *Router) Destinations(f *events.Finding) (dests, routes []string) {
	seen := map[string]bool{}
	for _, c := range r.routes {
		if !c.matches(f) {
			continue
		}
		routes = append(routes, c.name)
		for _, d := range c.destinations {
			if !seen[d] {
				seen[d] = true
				dests = append(dests, d)
			}
		}
	}
	return dests, routes
}

func (c compiled) matches(f *events.Finding) bool {
	if c.minSeverity != events.Severity_SEVERITY_UNSPECIFIED && f.Severity < c.minSeverity {
		return false
	}
	if c.providers != nil && !c.providers[f.Provider] {
		return false
	}
	if c.owners != nil && !c.owners[strings.ToLower(f.Owner)] {
		return false
	}
	if c.teams != nil && !c.teams[strings.ToLower(f.Team)] {
		return false
	}
	if len(c.detectors) > 0 && !anyGlob(c.detectors, f.Detector) {
		return false
	}
	if len(c.identities) > 0 && !anyGlob(c.identities, f.GetIdentity().GetId()) {
		return false
	}
	return true
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if Glob(p, s) {
			return true
		}
	}
	return false
}

// Glob reports whether s matches pattern, where * matches any run of bytes (including none)
// and ? exactly one; every other byte matches itself. It runs in O(len(pattern)·len(s)) at
// worst, so a hostile pattern cannot make it backtrack exponentially.
func Glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
