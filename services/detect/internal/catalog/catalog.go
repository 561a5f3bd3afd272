// Package catalog reads the operator's catalog of non-human identities: identity patterns with
// owner, team, purpose and kind, declared boundaries, dormancy thresholds and suppressions.
// Detectors ask it who owns an identity, which boundary it must keep and whether a finding
// is suppressed. A Holder keeps the current catalog and reloads the file when it changes; a
// catalog that fails validation is refused and the previous one stays in force.
package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// ErrInvalid marks a catalog that cannot be used; the error names the file, line and field.
var ErrInvalid = errors.New("invalid catalog")

// Default thresholds, used when the catalog does not set them.
const (
	DefaultDormancy          = 90 * 24 * time.Hour
	DefaultLearningPeriod    = 7 * 24 * time.Hour
	DefaultLearningMinEvents = 20
	// MinDormancy is the shortest dormancy threshold accepted: activity is tracked in
	// intervals merged across gaps shorter than this.
	MinDormancy = 24 * time.Hour
)

// Catalog is a validated catalog. It is immutable: a reload builds a new one.
type Catalog struct {
	// Path is the file it was read from ("" for a catalog built in code).
	Path     string
	Defaults Defaults
	Rules    []Rule
}

// Defaults are the thresholds that apply where no rule sets its own.
type Defaults struct {
	Dormancy          time.Duration
	DormancyByKind    map[events.IdentityKind]time.Duration
	LearningPeriod    time.Duration
	LearningMinEvents int
}

// Rule is one catalog entry: the identities it matches and what the catalog says about them.
type Rule struct {
	// Line is where the rule starts in the file, for messages.
	Line int
	// Match are glob patterns over the canonical identity id (`*` matches any run of
	// characters, `?` one); the rule applies when any matches.
	Match    []string
	Owner    string
	Team     string
	Purpose  string
	Kind     events.IdentityKind
	Dormancy time.Duration
	// Boundary is the declared boundary; nil when the rule declares none.
	Boundary *Boundary
	Suppress []Suppression
}

// Boundary is where an identity is allowed to act. Every dimension that is set must hold;
// an empty dimension is not checked.
type Boundary struct {
	CIDRs        []netip.Prefix
	Regions      []string
	VPCEndpoints []string
	Clusters     []string
	Namespaces   []string
	// UserAgents are glob patterns over the user agent.
	UserAgents []string
	// Hours is the daily window, in Location, when the identity may act; nil means any time.
	Hours *Hours
}

// Hours is a daily window [From, To) in minutes after midnight; To < From wraps midnight.
type Hours struct {
	From, To int
	Location *time.Location
	Text     string
}

// Contains reports whether t falls in the window.
func (h *Hours) Contains(t time.Time) bool {
	lt := t.In(h.Location)
	m := lt.Hour()*60 + lt.Minute()
	if h.From <= h.To {
		return m >= h.From && m < h.To
	}
	return m >= h.From || m < h.To
}

// Suppression silences findings of one detector (or all) whose cause matches, until a date.
type Suppression struct {
	Detector string
	Cause    string
	Until    time.Time
	Reason   string
}

// Empty returns a catalog with the defaults and no rules.
func Empty() *Catalog {
	return &Catalog{Defaults: Defaults{
		Dormancy:          DefaultDormancy,
		LearningPeriod:    DefaultLearningPeriod,
		LearningMinEvents: DefaultLearningMinEvents,
	}}
}

// Load reads and validates a catalog file.
func Load(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return Parse(path, data)
}

// file mirrors the YAML document.
type file struct {
	Version    int        `yaml:"version"`
	Defaults   fileDef    `yaml:"defaults"`
	Identities []fileRule `yaml:"identities"`
}

type fileDef struct {
	Dormancy          string            `yaml:"dormancy"`
	DormancyByKind    map[string]string `yaml:"dormancy_by_kind"`
	LearningPeriod    string            `yaml:"learning_period"`
	LearningMinEvents *int              `yaml:"learning_min_events"`
}

type fileRule struct {
	Match    stringList     `yaml:"match"`
	Owner    string         `yaml:"owner"`
	Team     string         `yaml:"team"`
	Purpose  string         `yaml:"purpose"`
	Kind     string         `yaml:"kind"`
	Dormancy string         `yaml:"dormancy"`
	Boundary *fileBoundary  `yaml:"boundary"`
	Suppress []fileSuppress `yaml:"suppress"`
}

type fileBoundary struct {
	CIDRs        []string `yaml:"cidrs"`
	Regions      []string `yaml:"regions"`
	VPCEndpoints []string `yaml:"vpc_endpoints"`
	Clusters     []string `yaml:"clusters"`
	Namespaces   []string `yaml:"namespaces"`
	UserAgents   []string `yaml:"user_agents"`
	Hours        string   `yaml:"hours"`
	Timezone     string   `yaml:"timezone"`
}

type fileSuppress struct {
	Detector string `yaml:"detector"`
	Cause    string `yaml:"cause"`
	Until    string `yaml:"until"`
	Reason   string `yaml:"reason"`
}

// stringList accepts a single string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// Detectors a suppression may name.
var detectorNames = map[string]bool{
	"privilege_expansion": true, "dormant_credential_reuse": true, "out_of_boundary": true, "*": true,
}

// Parse validates a catalog document. name labels error messages (usually the file path).
func Parse(name string, data []byte) (*Catalog, error) {
	if name == "" {
		name = "catalog"
	}
	bad := func(line int, format string, args ...any) error {
		loc := name
		if line > 0 {
			loc += ":" + strconv.Itoa(line)
		}
		return fmt.Errorf("%w: %s: %s", ErrInvalid, loc, fmt.Sprintf(format, args...))
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	lines := ruleLines(data)
	if f.Version != 0 && f.Version != 1 {
		return nil, bad(0, "version %d is not supported (want 1)", f.Version)
	}
	c := Empty()
	c.Path = name
	var err error
	if f.Defaults.Dormancy != "" {
		if c.Defaults.Dormancy, err = parseDormancy(f.Defaults.Dormancy); err != nil {
			return nil, bad(0, "defaults.dormancy: %v", err)
		}
	}
	for k, v := range f.Defaults.DormancyByKind {
		kind, err := events.ParseIdentityKind(k)
		if err != nil {
			return nil, bad(0, "defaults.dormancy_by_kind: %v", err)
		}
		d, err := parseDormancy(v)
		if err != nil {
			return nil, bad(0, "defaults.dormancy_by_kind.%s: %v", k, err)
		}
		if c.Defaults.DormancyByKind == nil {
			c.Defaults.DormancyByKind = map[events.IdentityKind]time.Duration{}
		}
		c.Defaults.DormancyByKind[kind] = d
	}
	if f.Defaults.LearningPeriod != "" {
		if c.Defaults.LearningPeriod, err = ParseDuration(f.Defaults.LearningPeriod); err != nil || c.Defaults.LearningPeriod < 0 {
			return nil, bad(0, "defaults.learning_period: want a duration such as 7d or 36h, got %q", f.Defaults.LearningPeriod)
		}
	}
	if f.Defaults.LearningMinEvents != nil {
		if *f.Defaults.LearningMinEvents < 0 {
			return nil, bad(0, "defaults.learning_min_events must not be negative")
		}
		c.Defaults.LearningMinEvents = *f.Defaults.LearningMinEvents
	}
	for i, fr := range f.Identities {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		where := fmt.Sprintf("identities[%d]", i)
		r, err := fr.rule(line)
		if err != nil {
			return nil, bad(line, "%s.%v", where, err)
		}
		c.Rules = append(c.Rules, r)
	}
	return c, nil
}

func (fr fileRule) rule(line int) (Rule, error) {
	r := Rule{Line: line, Owner: fr.Owner, Team: fr.Team, Purpose: fr.Purpose}
	if len(fr.Match) == 0 {
		return r, errors.New("match: at least one identity pattern is required")
	}
	for _, m := range fr.Match {
		if strings.TrimSpace(m) == "" {
			return r, errors.New("match: empty pattern")
		}
		r.Match = append(r.Match, m)
	}
	if fr.Kind != "" {
		k, err := events.ParseIdentityKind(fr.Kind)
		if err != nil {
			return r, fmt.Errorf("kind: %v (want human, service_account, workload_role, access_key_user, ci_cd, ai_agent or control_plane)", err)
		}
		r.Kind = k
	}
	if fr.Dormancy != "" {
		d, err := parseDormancy(fr.Dormancy)
		if err != nil {
			return r, fmt.Errorf("dormancy: %v", err)
		}
		r.Dormancy = d
	}
	if fr.Boundary != nil {
		b, err := fr.Boundary.boundary()
		if err != nil {
			return r, fmt.Errorf("boundary.%v", err)
		}
		r.Boundary = b
	}
	for j, s := range fr.Suppress {
		if !detectorNames[s.Detector] {
			return r, fmt.Errorf("suppress[%d].detector: unknown detector %q (want privilege_expansion, dormant_credential_reuse, out_of_boundary or *)", j, s.Detector)
		}
		sp := Suppression{Detector: s.Detector, Cause: s.Cause, Reason: s.Reason}
		if sp.Cause == "" {
			sp.Cause = "*"
		}
		if s.Until != "" {
			t, err := time.Parse("2006-01-02", s.Until)
			if err != nil {
				if t, err = time.Parse(time.RFC3339, s.Until); err != nil {
					return r, fmt.Errorf("suppress[%d].until: want a date (2006-01-02) or RFC 3339 time, got %q", j, s.Until)
				}
			}
			sp.Until = t
		}
		if strings.TrimSpace(sp.Reason) == "" {
			return r, fmt.Errorf("suppress[%d].reason: say why the finding is suppressed", j)
		}
		r.Suppress = append(r.Suppress, sp)
	}
	return r, nil
}

func (fb *fileBoundary) boundary() (*Boundary, error) {
	b := &Boundary{Regions: fb.Regions, VPCEndpoints: fb.VPCEndpoints, Clusters: fb.Clusters, Namespaces: fb.Namespaces, UserAgents: fb.UserAgents}
	for i, s := range fb.CIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, aerr := netip.ParseAddr(strings.TrimSpace(s))
			if aerr != nil {
				return nil, fmt.Errorf("cidrs[%d]: %q is neither a CIDR nor an address", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		b.CIDRs = append(b.CIDRs, p.Masked())
	}
	loc := time.UTC
	if fb.Timezone != "" {
		l, err := time.LoadLocation(fb.Timezone)
		if err != nil {
			return nil, fmt.Errorf("timezone: unknown time zone %q", fb.Timezone)
		}
		loc = l
	}
	if fb.Hours != "" {
		h, err := parseHours(fb.Hours)
		if err != nil {
			return nil, fmt.Errorf("hours: %v", err)
		}
		h.Location = loc
		b.Hours = h
	} else if fb.Timezone != "" {
		return nil, errors.New("timezone: set only together with hours")
	}
	return b, nil
}

// parseHours reads "HH:MM-HH:MM" (or "H-H").
func parseHours(s string) (*Hours, error) {
	from, to, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return nil, fmt.Errorf("want a window such as 08:00-18:00, got %q", s)
	}
	f, err1 := clock(from)
	t, err2 := clock(to)
	if err1 != nil || err2 != nil || f == t {
		return nil, fmt.Errorf("want a window such as 08:00-18:00, got %q", s)
	}
	return &Hours{From: f, To: t, Text: strings.TrimSpace(s)}, nil
}

func clock(s string) (int, error) {
	s = strings.TrimSpace(s)
	h, m, hasMin := strings.Cut(s, ":")
	hh, err := strconv.Atoi(h)
	if err != nil || hh < 0 || hh > 24 {
		return 0, errors.New("bad hour")
	}
	mm := 0
	if hasMin {
		if mm, err = strconv.Atoi(m); err != nil || mm < 0 || mm > 59 {
			return 0, errors.New("bad minute")
		}
	}
	if hh == 24 && mm != 0 {
		return 0, errors.New("bad time")
	}
	return hh*60 + mm, nil
}

// ParseDuration reads a Go duration with an extra unit d (24h): 90d, 36h, 1d12h.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var total time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		total = time.Duration(days) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return total, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return total + d, nil
}

func parseDormancy(s string) (time.Duration, error) {
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 90d, got %q", s)
	}
	if d < MinDormancy {
		return 0, fmt.Errorf("%s is below the minimum of 1d", s)
	}
	return d, nil
}

// yamlError rewrites a YAML error as "file:line: message" lines, without Go type names.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if i := strings.Index(m, " in type "); i >= 0 {
			m = m[:i]
		}
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			if n, msg, ok := strings.Cut(rest, ": "); ok {
				out = append(out, name+":"+n+": "+msg)
				continue
			}
		}
		out = append(out, name+": "+m)
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(out, "; "))
}

// ruleLines returns the line of each entry of the identities list.
func ruleLines(data []byte) []int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "identities" || doc.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var out []int
		for _, n := range doc.Content[i+1].Content {
			out = append(out, n.Line)
		}
		return out
	}
	return nil
}

// Match returns the index of the first rule matching the identity id, or -1. Rules are
// tried in file order, so put specific patterns before general ones.
func (c *Catalog) Match(identityID string) int {
	for i := range c.Rules {
		for _, p := range c.Rules[i].Match {
			if Glob(p, identityID) {
				return i
			}
		}
	}
	return -1
}

// Rule returns rule i, or nil for -1.
func (c *Catalog) Rule(i int) *Rule {
	if i < 0 || i >= len(c.Rules) {
		return nil
	}
	return &c.Rules[i]
}

// Dormancy returns the dormancy threshold for an identity of a kind under rule r (may be nil).
func (c *Catalog) Dormancy(r *Rule, kind events.IdentityKind) time.Duration {
	if r != nil && r.Dormancy > 0 {
		return r.Dormancy
	}
	if d, ok := c.Defaults.DormancyByKind[kind]; ok {
		return d
	}
	return c.Defaults.Dormancy
}

// Suppressed returns the suppression that silences a finding of detector with cause at
// time t under rule r, or nil.
func (r *Rule) Suppressed(detector, cause string, t time.Time) *Suppression {
	if r == nil {
		return nil
	}
	for i := range r.Suppress {
		s := &r.Suppress[i]
		if (s.Detector == "*" || s.Detector == detector) && Glob(s.Cause, cause) && (s.Until.IsZero() || t.Before(s.Until)) {
			return s
		}
	}
	return nil
}

// Glob matches s against a pattern where `*` matches any run of characters (including
// none, and across `/` and `:`) and `?` matches one byte. Matching is case-sensitive. It is
// the same wildcard as the grant model's.
func Glob(pattern, s string) bool { return grants.Glob(pattern, s, false) }

// GlobFold is Glob ignoring ASCII case (user agents).
func GlobFold(pattern, s string) bool { return grants.Glob(pattern, s, true) }
