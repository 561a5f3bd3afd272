// Package loadgen makes the audit records of the end-to-end benchmark. It turns the real
// public records in the repository's testdata/ (AWS CloudTrail from Stratus Red Team and an
// S3 delivery file, GCP Cloud Audit Log entries, a Kubernetes audit log) into templates, and
// stamps every generated record with its own id, the current time and one of many
// identities — with the identity's account, access key, session and home network — so that
// the pipeline sees what a real organisation sends: many distinct principals, each acting
// from its usual place.
//
// A small, chosen share of records must raise a finding: an AWS user attaching
// AdministratorAccess to a new user (privilege_expansion), an AWS role acting from a public
// address outside the 10.0.0.0/8 boundary the benchmark catalog declares for it
// (out_of_boundary, declared), and a Kubernetes service account used from a public address
// (out_of_boundary, workload). Each trigger has a cause of its own, so each raises exactly
// one finding, and the finding latency has samples.
//
// Generation is template filling: a record is a list of literal byte segments and slots, so
// one record costs about a microsecond and the generator can run next to the pipeline
// without taking much of its CPU.
package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// Providers, as the ingest sources of the benchmark name them.
const (
	AWS = "aws"
	GCP = "gcp"
	K8s = "k8s"
)

// Providers lists the providers in a fixed order.
var Providers = []string{AWS, GCP, K8s}

// Trigger kinds: what a trigger record makes the detectors raise.
const (
	TriggerGrant      = "grant_admin"      // privilege_expansion
	TriggerBoundary   = "declared_network" // out_of_boundary (catalog boundary)
	TriggerK8sAddress = "k8s_public"       // out_of_boundary (workload credential)
)

// Catalog is the detect catalog the benchmark runs with: every benchmark AWS role must act
// from 10.0.0.0/8, which every generated record of a role does except the boundary triggers.
const Catalog = `version: 1
identities:
  - match: "aws:arn:aws:iam::*:role/bench-role-*"
    owner: bench@example.com
    team: bench
    purpose: end-to-end benchmark workload roles
    boundary:
      cidrs: [10.0.0.0/8]
`

// slot is a place in a template that each record fills.
type slot uint8

const (
	slotNone       slot = iota
	slotEventID         // a random UUID
	slotTimeSec         // RFC 3339 UTC, seconds (CloudTrail)
	slotTimeMicro       // RFC 3339 UTC, microseconds (Kubernetes, GCP)
	slotAccount         // the identity's AWS account
	slotName            // the identity's user, role or service-account name
	slotAccessKey       // the identity's long-lived key id (AKIA…)
	slotSessionKey      // the identity's session key id (ASIA…)
	slotPrincipal       // the identity's unique id (AIDA…/AROA…)
	slotSession         // the role session name
	slotIP              // an address in the identity's home /24
	slotPublicIP        // a random public address (boundary triggers)
	slotGrantee         // a new user name (privilege triggers)
	slotEmail           // the GCP service-account email
	slotNamespace       // the Kubernetes namespace
	slotInsertID        // a GCP insertId
)

var slotNames = map[string]slot{
	"EID": slotEventID, "TSEC": slotTimeSec, "TMICRO": slotTimeMicro, "ACCT": slotAccount,
	"NAME": slotName, "AKEY": slotAccessKey, "SKEY": slotSessionKey, "PID": slotPrincipal,
	"SESSION": slotSession, "IP": slotIP, "PUBIP": slotPublicIP, "GRANTEE": slotGrantee,
	"EMAIL": slotEmail, "NS": slotNamespace, "INSERT": slotInsertID,
}

func mark(name string) string { return "@@" + name + "@@" }

type segment struct {
	lit  []byte
	slot slot
}

// template is one record with slots.
type template struct {
	provider string
	class    string // "user", "role", "sa" (GCP), "ksa" (Kubernetes)
	trigger  string
	segs     []segment
	// logName is the GCP log name (for event ids).
	logName string
}

// compile cuts a marshalled record with @@SLOT@@ marks into segments.
func compile(data []byte) ([]segment, error) {
	var segs []segment
	for len(data) > 0 {
		i := bytes.Index(data, []byte("@@"))
		if i < 0 {
			segs = append(segs, segment{lit: data})
			break
		}
		j := bytes.Index(data[i+2:], []byte("@@"))
		if j < 0 {
			return nil, errors.New("loadgen: unterminated slot mark")
		}
		name := string(data[i+2 : i+2+j])
		s, ok := slotNames[name]
		if !ok {
			return nil, fmt.Errorf("loadgen: unknown slot %q", name)
		}
		segs = append(segs, segment{lit: data[:i], slot: s})
		data = data[i+2+j+2:]
	}
	return segs, nil
}

// Templates are the compiled templates of every provider.
type Templates struct {
	normal   map[string]map[string][]*template // provider → class → templates
	triggers map[string][]*template            // trigger kind → templates
	// Sizes is the mean size of a record of each provider, in bytes.
	Sizes map[string]float64
}

// LoadTemplates compiles the samples under the repository's testdata directory.
func LoadTemplates(testdata string) (*Templates, error) {
	t := &Templates{normal: map[string]map[string][]*template{}, triggers: map[string][]*template{}, Sizes: map[string]float64{}}
	for _, p := range Providers {
		t.normal[p] = map[string][]*template{}
	}
	aws, err := awsSamples(testdata)
	if err != nil {
		return nil, err
	}
	n := normalize.NewNormalizer()
	for _, rec := range aws {
		if err := t.addAWS(n, rec); err != nil {
			return nil, err
		}
	}
	gcp, err := gcpSamples(testdata)
	if err != nil {
		return nil, err
	}
	for _, rec := range gcp {
		if err := t.addGCP(rec); err != nil {
			return nil, err
		}
	}
	k8s, err := readLines(filepath.Join(testdata, "k8s", "audit-log", "audit2rbac-demo.log"))
	if err != nil {
		return nil, err
	}
	for _, rec := range k8s {
		if err := t.addK8s(rec); err != nil {
			return nil, err
		}
	}
	for _, p := range Providers {
		if len(t.normal[p]) == 0 {
			return nil, fmt.Errorf("loadgen: no %s templates under %s", p, testdata)
		}
	}
	for _, k := range []string{TriggerGrant, TriggerBoundary, TriggerK8sAddress} {
		if len(t.triggers[k]) == 0 {
			return nil, fmt.Errorf("loadgen: no template for trigger %s under %s", k, testdata)
		}
	}
	g := t.NewGenerator(Spec{Seed: 1, Identities: 1000, Mix: DefaultMix})
	for _, p := range Providers {
		total := 0
		const samples = 2000
		for i := 0; i < samples; i++ {
			total += len(g.record(p, nil))
		}
		t.Sizes[p] = float64(total) / samples
	}
	return t, nil
}

func awsSamples(testdata string) ([]map[string]any, error) {
	var out []map[string]any
	files, err := filepath.Glob(filepath.Join(testdata, "cloudtrail", "stratus-red-team", "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var recs []map[string]any
		if err := decode(data, &recs); err != nil {
			return nil, fmt.Errorf("loadgen: %s: %w", f, err)
		}
		out = append(out, recs...)
	}
	return out, nil
}

func gcpSamples(testdata string) ([]map[string]any, error) {
	var out []map[string]any
	files, _ := filepath.Glob(filepath.Join(testdata, "gcp", "logentry", "*.json"))
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := decode(data, &m); err != nil {
			return nil, fmt.Errorf("loadgen: %s: %w", f, err)
		}
		out = append(out, m)
	}
	lines, err := readLines(filepath.Join(testdata, "gcp", "jsonl", "gcp_logging.jsonl"))
	if err != nil {
		return nil, err
	}
	return append(out, lines...), nil
}

func readLines(path string) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		if err := decode(line, &m); err != nil {
			return nil, fmt.Errorf("loadgen: %s: %w", path, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// credentialEvents make a finding of their own whoever calls them (credentials for another
// identity, console passwords, federation tokens): they stay out of the ordinary mix so the
// findings come from the triggers.
var credentialEvents = map[string]bool{
	"CreateAccessKey": true, "CreateLoginProfile": true, "UpdateLoginProfile": true,
	"GetFederationToken": true, "ConsoleLogin": true, "CreateUser": true, "SendSSHPublicKey": true,
	"SendSerialConsoleSSHPublicKey": true,
}

// addAWS makes templates of one CloudTrail record: an ordinary one for IAM users and
// assumed roles whose event changes no grant, and the trigger templates.
func (t *Templates) addAWS(n *normalize.Normalizer, rec map[string]any) error {
	u, _ := rec["userIdentity"].(map[string]any)
	if u == nil {
		return nil
	}
	typ, _ := u["type"].(string)
	name, _ := rec["eventName"].(string)
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ev, err := n.Normalize(normalize.Input{Data: raw, Format: "cloudtrail"})
	if err != nil {
		return nil // a record normalize rejects is not load
	}
	ip, _ := rec["sourceIPAddress"].(string)
	switch {
	case name == "AttachUserPolicy" && typ == "IAMUser":
		return t.add(TriggerGrant, AWS, "user", rec, "", func(m map[string]any) {
			m["requestParameters"].(map[string]any)["userName"] = mark("GRANTEE")
		})
	case len(ev.GrantChanges) > 0 || credentialEvents[name] || ev.Action.GetService() == "sts":
		return nil
	}
	switch typ {
	case "IAMUser":
		return t.add("", AWS, "user", rec, "", nil)
	case "AssumedRole":
		if err := t.add("", AWS, "role", rec, "", nil); err != nil {
			return err
		}
		if looksLikeIP(ip) {
			return t.add(TriggerBoundary, AWS, "role", rec, "", func(m map[string]any) { m["sourceIPAddress"] = mark("PUBIP") })
		}
	}
	return nil
}

// add compiles rec for provider p and identity class as an ordinary template (trigger "")
// or a trigger, after edit.
func (t *Templates) add(trigger, p, class string, rec map[string]any, logName string, edit func(map[string]any)) error {
	m := deepCopy(rec).(map[string]any)
	var old []string
	switch p {
	case AWS:
		old = stampAWS(m, class)
	case GCP:
		stampGCP(m)
	case K8s:
		stampK8s(m)
	}
	if edit != nil {
		edit(m)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	// The identity's account and name also appear inside resources and ARNs elsewhere in the
	// record: move them with the identity.
	for i := 0; i+1 < len(old); i += 2 {
		if len(old[i]) >= 6 {
			data = bytes.ReplaceAll(data, []byte(old[i]), []byte(old[i+1]))
		}
	}
	segs, err := compile(data)
	if err != nil {
		return err
	}
	tp := &template{provider: p, class: class, trigger: trigger, segs: segs, logName: logName}
	if p == GCP {
		tp.logName, _ = m["logName"].(string)
	}
	if trigger != "" {
		t.triggers[trigger] = append(t.triggers[trigger], tp)
		return nil
	}
	t.normal[p][class] = append(t.normal[p][class], tp)
	return nil
}

// stampAWS puts slots where a CloudTrail record names its id, time, account and caller, and
// returns the (old, new) pairs to replace elsewhere in the record.
func stampAWS(m map[string]any, class string) []string {
	u := m["userIdentity"].(map[string]any)
	oldAcct, _ := m["recipientAccountId"].(string)
	m["eventID"] = mark("EID")
	m["eventTime"] = mark("TSEC")
	m["recipientAccountId"] = mark("ACCT")
	u["accountId"] = mark("ACCT")
	if ip, _ := m["sourceIPAddress"].(string); looksLikeIP(ip) {
		m["sourceIPAddress"] = mark("IP")
	}
	// Session attributes carry when the credential was issued: now, or every new key would
	// look like an old credential used for the first time.
	if ctx, ok := u["sessionContext"].(map[string]any); ok {
		if attrs, ok := ctx["attributes"].(map[string]any); ok {
			if _, ok := attrs["creationDate"]; ok {
				attrs["creationDate"] = mark("TSEC")
			}
		}
	}
	var oldName string
	switch class {
	case "user":
		oldName, _ = u["userName"].(string)
		u["userName"] = mark("NAME")
		u["arn"] = "arn:aws:iam::" + mark("ACCT") + ":user/" + mark("NAME")
		u["principalId"] = mark("PID")
		if _, ok := u["accessKeyId"]; ok {
			u["accessKeyId"] = mark("AKEY")
		}
	case "role":
		ctx, _ := u["sessionContext"].(map[string]any)
		issuer, _ := ctx["sessionIssuer"].(map[string]any)
		if issuer != nil {
			oldName, _ = issuer["userName"].(string)
			issuer["userName"] = mark("NAME")
			issuer["arn"] = "arn:aws:iam::" + mark("ACCT") + ":role/" + mark("NAME")
			issuer["principalId"] = mark("PID")
			issuer["accountId"] = mark("ACCT")
		}
		u["arn"] = "arn:aws:sts::" + mark("ACCT") + ":assumed-role/" + mark("NAME") + "/" + mark("SESSION")
		u["principalId"] = mark("PID") + ":" + mark("SESSION")
		if _, ok := u["accessKeyId"]; ok {
			u["accessKeyId"] = mark("SKEY")
		}
	}
	pairs := []string{}
	if oldAcct != "" {
		pairs = append(pairs, oldAcct, mark("ACCT"))
	}
	if oldName != "" {
		pairs = append(pairs, oldName, mark("NAME"))
	}
	return pairs
}

// addGCP makes templates of one Cloud Audit Log entry with a caller.
func (t *Templates) addGCP(rec map[string]any) error {
	pp, _ := rec["protoPayload"].(map[string]any)
	if pp == nil {
		return nil
	}
	auth, _ := pp["authenticationInfo"].(map[string]any)
	if auth == nil || auth["principalEmail"] == nil {
		return nil
	}
	logName, _ := rec["logName"].(string)
	return t.add("", GCP, "sa", rec, logName, nil)
}

func stampGCP(m map[string]any) {
	m["insertId"] = mark("INSERT")
	m["timestamp"] = mark("TMICRO")
	m["receiveTimestamp"] = mark("TMICRO")
	pp := m["protoPayload"].(map[string]any)
	pp["@type"] = "type.googleapis.com/google.cloud.audit.AuditLog"
	auth := pp["authenticationInfo"].(map[string]any)
	auth["principalEmail"] = mark("EMAIL")
	if _, ok := auth["principalSubject"]; ok {
		auth["principalSubject"] = "serviceAccount:" + mark("EMAIL")
	}
	if md, ok := pp["requestMetadata"].(map[string]any); ok {
		if _, ok := md["callerIp"]; ok {
			md["callerIp"] = mark("IP")
		}
	}
}

// addK8s makes templates of one Kubernetes audit event, acted by a service account.
func (t *Templates) addK8s(rec map[string]any) error {
	if err := t.add("", K8s, "ksa", rec, "", nil); err != nil {
		return err
	}
	return t.add(TriggerK8sAddress, K8s, "ksa", rec, "", func(m map[string]any) { m["sourceIPs"] = []any{mark("PUBIP")} })
}

func stampK8s(m map[string]any) {
	m["auditID"] = mark("EID")
	m["stage"] = "ResponseComplete"
	m["timestamp"] = mark("TMICRO")
	m["requestReceivedTimestamp"] = mark("TMICRO")
	m["stageTimestamp"] = mark("TMICRO")
	if md, ok := m["metadata"].(map[string]any); ok {
		md["creationTimestamp"] = mark("TSEC")
	}
	delete(m, "impersonatedUser")
	m["user"] = map[string]any{
		"username": "system:serviceaccount:" + mark("NS") + ":" + mark("NAME"),
		"groups":   []any{"system:serviceaccounts", "system:serviceaccounts:" + mark("NS"), "system:authenticated"},
	}
	m["sourceIPs"] = []any{mark("IP")}
}

// looksLikeIP reports whether s is an address as CloudTrail logs it (the samples are
// anonymised into addresses such as 075.050.255.67, which netip refuses).
func looksLikeIP(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return s != "" && strings.Count(s, ".") == 3 && strings.Trim(s, "0123456789.") == ""
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// Mix is the share of each provider in the load.
type Mix struct{ AWS, GCP, K8s float64 }

// DefaultMix is mostly CloudTrail, as most NHI activity is in the cloud control planes.
var DefaultMix = Mix{AWS: 0.6, GCP: 0.25, K8s: 0.15}

// Spec says what to generate.
type Spec struct {
	Seed int64
	// Identities is how many distinct identities the records spread over, uniformly (the
	// hardest case for the detectors' state: no identity is hot).
	Identities int
	Mix        Mix
	// TriggerShare is the share of records that must raise a finding.
	TriggerShare float64
	// Cluster is the Kubernetes cluster name the k8s source stamps (for event ids).
	Cluster string
}

// Trigger is a record that must raise a finding.
type Trigger struct {
	Kind    string
	EventID string
}

// Generator generates records. It is not safe for concurrent use.
type Generator struct {
	t     *Templates
	spec  Spec
	rng   *rand.Rand
	cum   [3]float64
	split [3]int // identity index ranges per provider
	// values of the record being generated
	k        int
	eventID  []byte
	grantees uint64
	buf      []byte
	sec      int64
	secText  []byte
	micro    int64
	microTxt []byte
}

// NewGenerator returns a generator for spec.
func (t *Templates) NewGenerator(spec Spec) *Generator {
	if spec.Identities < 3 {
		spec.Identities = 3
	}
	total := spec.Mix.AWS + spec.Mix.GCP + spec.Mix.K8s
	g := &Generator{t: t, spec: spec, rng: rand.New(rand.NewPCG(uint64(spec.Seed), 0x6e68697762))}
	g.cum[0] = spec.Mix.AWS / total
	g.cum[1] = g.cum[0] + spec.Mix.GCP/total
	g.cum[2] = 1
	// Identities are split between providers in proportion to the mix.
	g.split[0] = max(1, int(float64(spec.Identities)*g.cum[0]))
	g.split[1] = max(g.split[0]+1, int(float64(spec.Identities)*g.cum[1]))
	g.split[2] = max(g.split[1]+1, spec.Identities)
	return g
}

// Identities is the number of distinct identities the generator draws from.
func (g *Generator) Identities() int { return g.split[2] }

// Provider picks the provider of the next record.
func (g *Generator) Provider() string {
	x := g.rng.Float64()
	switch {
	case x < g.cum[0]:
		return AWS
	case x < g.cum[1]:
		return GCP
	}
	return K8s
}

// Next appends the next record of provider p to dst and returns it. With the spec's
// probability an AWS or Kubernetes record is a trigger, returned with it (GCP records have
// no trigger: the samples hold no grant change).
func (g *Generator) Next(dst []byte, p string) ([]byte, *Trigger) {
	if p != GCP && g.spec.TriggerShare > 0 && g.rng.Float64() < g.spec.TriggerShare {
		kind := TriggerK8sAddress
		if p == AWS {
			kind = TriggerGrant
			if g.rng.IntN(2) == 0 {
				kind = TriggerBoundary
			}
		}
		tp := g.t.triggers[kind][g.rng.IntN(len(g.t.triggers[kind]))]
		g.pickIdentity(tp.provider, tp.class)
		dst = g.fill(dst, tp)
		return dst, &Trigger{Kind: kind, EventID: g.eventIDOf(tp)}
	}
	return g.appendRecord(dst, p), nil
}

func (g *Generator) record(p string, dst []byte) []byte { return g.appendRecord(dst, p) }

// appendRecord appends an ordinary record of provider p.
func (g *Generator) appendRecord(dst []byte, p string) []byte {
	classes := g.t.normal[p]
	var class string
	switch p {
	case AWS:
		// One AWS identity in three is an IAM user with an access key, the others roles.
		k := g.identity(AWS)
		class = "role"
		if k%3 == 0 && len(classes["user"]) > 0 {
			class = "user"
		}
		g.k = k
	case GCP:
		class = "sa"
		g.k = g.identity(GCP)
	default:
		class = "ksa"
		g.k = g.identity(K8s)
	}
	list := classes[class]
	return g.fill(dst, list[g.rng.IntN(len(list))])
}

// identity draws an identity index of provider p.
func (g *Generator) identity(p string) int {
	lo, hi := 0, g.split[0]
	switch p {
	case GCP:
		lo, hi = g.split[0], g.split[1]
	case K8s:
		lo, hi = g.split[1], g.split[2]
	}
	return lo + g.rng.IntN(hi-lo)
}

// pickIdentity draws an identity of provider p whose class fits a trigger template.
func (g *Generator) pickIdentity(p, class string) {
	for {
		g.k = g.identity(p)
		if p != AWS || (class == "user") == (g.k%3 == 0) {
			return
		}
	}
}

func (g *Generator) eventIDOf(tp *template) string {
	switch tp.provider {
	case AWS:
		return events.CloudTrailEventID(g.account(), string(g.eventID))
	case K8s:
		return events.K8sEventID(g.spec.Cluster, string(g.eventID), "ResponseComplete")
	}
	return ""
}

// fill appends one record of template tp for identity g.k.
func (g *Generator) fill(dst []byte, tp *template) []byte {
	g.eventID = appendUUID(g.eventID[:0], g.rng)
	now := time.Now()
	for _, s := range tp.segs {
		dst = append(dst, s.lit...)
		switch s.slot {
		case slotNone:
		case slotEventID:
			dst = append(dst, g.eventID...)
		case slotTimeSec:
			dst = append(dst, g.timeSec(now)...)
		case slotTimeMicro:
			dst = append(dst, g.timeMicro(now)...)
		case slotAccount:
			dst = append(dst, g.account()...)
		case slotName:
			dst = g.appendName(dst, tp)
		case slotAccessKey:
			dst = appendKey(dst, "AKIA", uint64(g.k))
		case slotSessionKey:
			dst = appendKey(dst, "ASIA", uint64(g.k)<<8|uint64(g.rng.IntN(4)))
		case slotPrincipal:
			if tp.class == "user" {
				dst = appendKey(dst, "AIDA", uint64(g.k))
			} else {
				dst = appendKey(dst, "AROA", uint64(g.k))
			}
		case slotSession:
			dst = append(dst, "bench-session-"...)
			dst = strconv.AppendInt(dst, int64(g.k%7), 10)
		case slotIP:
			// The identity's home /24 in 10.0.0.0/8: what the learned and declared
			// boundaries expect.
			dst = append(dst, "10."...)
			dst = strconv.AppendInt(dst, int64(g.k>>8&0xff), 10)
			dst = append(dst, '.')
			dst = strconv.AppendInt(dst, int64(g.k&0xff), 10)
			dst = append(dst, '.')
			dst = strconv.AppendInt(dst, int64(1+g.rng.IntN(8)), 10)
		case slotPublicIP:
			dst = appendPublicIP(dst, g.rng)
		case slotGrantee:
			g.grantees++
			dst = append(dst, "bench-new-user-"...)
			dst = strconv.AppendUint(dst, uint64(g.spec.Seed)<<32|g.grantees, 36)
		case slotEmail:
			dst = append(dst, "bench-sa-"...)
			dst = strconv.AppendInt(dst, int64(g.k), 10)
			dst = append(dst, "@bench-project-"...)
			dst = strconv.AppendInt(dst, int64(g.k%16), 10)
			dst = append(dst, ".iam.gserviceaccount.com"...)
		case slotNamespace:
			dst = append(dst, "bench-ns-"...)
			dst = strconv.AppendInt(dst, int64(g.k%32), 10)
		case slotInsertID:
			dst = append(dst, g.eventID[:8]...)
			dst = append(dst, g.eventID[9:13]...)
			dst = append(dst, g.eventID[14:18]...)
		}
	}
	return dst
}

func (g *Generator) appendName(dst []byte, tp *template) []byte {
	switch tp.class {
	case "user":
		dst = append(dst, "bench-user-"...)
	case "role":
		dst = append(dst, "bench-role-"...)
	default:
		dst = append(dst, "bench-sa-"...)
	}
	return strconv.AppendInt(dst, int64(g.k), 10)
}

// account is the AWS account of identity g.k: 64 accounts share the AWS identities.
func (g *Generator) account() string {
	return strconv.Itoa(310000000000 + g.k%64)
}

func (g *Generator) timeSec(now time.Time) []byte {
	if s := now.Unix(); s != g.sec || g.secText == nil {
		g.sec = s
		g.secText = now.UTC().AppendFormat(g.secText[:0], "2006-01-02T15:04:05Z")
	}
	return g.secText
}

func (g *Generator) timeMicro(now time.Time) []byte {
	if us := now.UnixMicro(); us != g.micro || g.microTxt == nil {
		g.micro = us
		g.microTxt = now.UTC().AppendFormat(g.microTxt[:0], "2006-01-02T15:04:05.000000Z")
	}
	return g.microTxt
}

const hexDigits = "0123456789abcdef"

func appendUUID(dst []byte, rng *rand.Rand) []byte {
	var b [16]byte
	a, c := rng.Uint64(), rng.Uint64()
	for i := 0; i < 8; i++ {
		b[i], b[8+i] = byte(a>>(8*i)), byte(c>>(8*i))
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[x>>4], hexDigits[x&15])
	}
	return dst
}

// appendKey appends an AWS-style key id: prefix and 16 characters of base 32 of n.
func appendKey(dst []byte, prefix string, n uint64) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	dst = append(dst, prefix...)
	x := n*0x9e3779b97f4a7c15 ^ n
	for i := 0; i < 16; i++ {
		dst = append(dst, alphabet[x&31])
		x = x>>5 | (n+uint64(i))<<59
	}
	return dst
}

// publicFirstOctets are first octets of globally routed unicast space.
var publicFirstOctets = []int{3, 13, 18, 23, 34, 35, 44, 45, 46, 51, 52, 54, 63, 64, 66, 80, 81, 85, 89, 91, 92, 95, 104, 151, 176, 185, 193, 195, 212, 213}

func appendPublicIP(dst []byte, rng *rand.Rand) []byte {
	dst = strconv.AppendInt(dst, int64(publicFirstOctets[rng.IntN(len(publicFirstOctets))]), 10)
	for i := 0; i < 3; i++ {
		dst = append(dst, '.')
		dst = strconv.AppendInt(dst, int64(1+rng.IntN(254)), 10)
	}
	return dst
}

// MeanSize is the mean record size of a mix, in bytes.
func (t *Templates) MeanSize(m Mix) float64 {
	total := m.AWS + m.GCP + m.K8s
	return (m.AWS*t.Sizes[AWS] + m.GCP*t.Sizes[GCP] + m.K8s*t.Sizes[K8s]) / total
}

// Describe summarises the templates, for the report.
func (t *Templates) Describe() string {
	var parts []string
	for _, p := range Providers {
		n := 0
		for _, l := range t.normal[p] {
			n += len(l)
		}
		parts = append(parts, fmt.Sprintf("%s %d templates (%.0f B mean)", p, n, t.Sizes[p]))
	}
	return strings.Join(parts, ", ")
}
