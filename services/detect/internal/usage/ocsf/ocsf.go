// Package ocsf renders usage-against-grants reports as OCSF IAM Analysis Findings
// (class_uid 2008, OCSF 1.6.0): what an identity may do (permission_analysis_results, one
// per grant), what it did (identity_activity_metrics, the resources it touched) and the
// least-privilege policy its use needs (remediation, unmapped). The JSON Schema of the
// documents is schemas/ocsf/iam_analysis_finding.schema.json.
package ocsf

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/usage"
)

// OCSF identifiers of the documents.
const (
	ClassUID    = 2008
	CategoryUID = 2
	Version     = "1.6.0"
	// SchemaFile is the document's JSON Schema in the schemas package's OCSF files.
	SchemaFile = "ocsf/iam_analysis_finding.schema.json"
	// Analytic names the analysis in finding_info.analytic and in the finding uid.
	Analytic = "usage_vs_granted"
)

// maxResources bounds the resources listed per document.
const maxResources = 100

// Options say what the report does not.
type Options struct {
	// Time is when the analysis was made: the finding's time and the day its uid belongs to.
	Time time.Time
	// ProductVersion is nhiwatch's version.
	ProductVersion string
}

// Document is an IAM Analysis Finding. Fields follow the OCSF attribute names and order of
// the class definition; empty ones are left out.
type Document struct {
	ActivityID                int                  `json:"activity_id"`
	ActivityName              string               `json:"activity_name"`
	CategoryUID               int                  `json:"category_uid"`
	CategoryName              string               `json:"category_name"`
	ClassUID                  int                  `json:"class_uid"`
	ClassName                 string               `json:"class_name"`
	TypeUID                   int                  `json:"type_uid"`
	TypeName                  string               `json:"type_name"`
	SeverityID                int                  `json:"severity_id"`
	Severity                  string               `json:"severity"`
	StatusID                  int                  `json:"status_id"`
	Status                    string               `json:"status"`
	ConfidenceID              int                  `json:"confidence_id"`
	Confidence                string               `json:"confidence"`
	Time                      int64                `json:"time"`
	StartTime                 int64                `json:"start_time,omitempty"`
	EndTime                   int64                `json:"end_time,omitempty"`
	Count                     uint64               `json:"count,omitempty"`
	Message                   string               `json:"message"`
	Metadata                  Metadata             `json:"metadata"`
	FindingInfo               FindingInfo          `json:"finding_info"`
	User                      User                 `json:"user"`
	IdentityActivityMetrics   ActivityMetrics      `json:"identity_activity_metrics"`
	PermissionAnalysisResults []PermissionAnalysis `json:"permission_analysis_results"`
	Resources                 []Resource           `json:"resources,omitempty"`
	Remediation               *Remediation         `json:"remediation,omitempty"`
	Cloud                     *Cloud               `json:"cloud,omitempty"`
	Unmapped                  Unmapped             `json:"unmapped"`
}

// Metadata is the OCSF metadata object.
type Metadata struct {
	Product    Product  `json:"product"`
	Version    string   `json:"version"`
	UID        string   `json:"uid"`
	LoggedTime int64    `json:"logged_time"`
	Profiles   []string `json:"profiles,omitempty"`
}

// Product is the OCSF product object.
type Product struct {
	Name       string  `json:"name"`
	VendorName string  `json:"vendor_name"`
	Version    string  `json:"version,omitempty"`
	Feature    Feature `json:"feature"`
}

// Feature is the product feature that made the finding.
type Feature struct {
	Name string `json:"name"`
}

// FindingInfo is the OCSF finding_info object.
type FindingInfo struct {
	UID           string       `json:"uid"`
	Title         string       `json:"title"`
	Desc          string       `json:"desc"`
	Types         []string     `json:"types"`
	Analytic      AnalyticInfo `json:"analytic"`
	CreatedTime   int64        `json:"created_time"`
	FirstSeenTime int64        `json:"first_seen_time,omitempty"`
	LastSeenTime  int64        `json:"last_seen_time,omitempty"`
	DataSources   []string     `json:"data_sources,omitempty"`
	Tags          []KeyValue   `json:"tags,omitempty"`
}

// AnalyticInfo is the OCSF analytic object.
type AnalyticInfo struct {
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
	Name   string `json:"name"`
	UID    string `json:"uid"`
}

// KeyValue is the OCSF key_value_object.
type KeyValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// User is the OCSF user object: the identity analysed.
type User struct {
	UID     string   `json:"uid"`
	Name    string   `json:"name,omitempty"`
	Type    string   `json:"type,omitempty"`
	TypeID  int      `json:"type_id"`
	Account *Account `json:"account,omitempty"`
}

// Account is the OCSF account object.
type Account struct {
	UID    string `json:"uid"`
	Type   string `json:"type,omitempty"`
	TypeID int    `json:"type_id"`
}

// ActivityMetrics is the OCSF identity_activity_metrics object.
type ActivityMetrics struct {
	FirstSeenTime           int64        `json:"first_seen_time,omitempty"`
	LastSeenTime            int64        `json:"last_seen_time,omitempty"`
	ProgrammaticCredentials []Credential `json:"programmatic_credentials,omitempty"`
}

// Credential is the OCSF programmatic_credential object.
type Credential struct {
	UID          string `json:"uid"`
	Type         string `json:"type,omitempty"`
	LastUsedTime int64  `json:"last_used_time,omitempty"`
}

// PermissionAnalysis is the OCSF permission_analysis_result object: one grant.
type PermissionAnalysis struct {
	Policy                Policy   `json:"policy"`
	GrantedPrivileges     []string `json:"granted_privileges"`
	UnusedPrivilegesCount int      `json:"unused_privileges_count"`
	UnusedServicesCount   int      `json:"unused_services_count"`
}

// Policy is the OCSF policy object: the grant's definition.
type Policy struct {
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Type      string `json:"type"`
	Desc      string `json:"desc"`
	IsApplied bool   `json:"is_applied"`
}

// Resource is the OCSF resource_details object: a resource the identity used.
type Resource struct {
	UID       string   `json:"uid"`
	Type      string   `json:"type,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Labels    []string `json:"labels"`
}

// Remediation is the OCSF remediation object.
type Remediation struct {
	Desc       string   `json:"desc"`
	References []string `json:"references,omitempty"`
}

// Cloud is the OCSF cloud object.
type Cloud struct {
	Provider string   `json:"provider"`
	Account  *Account `json:"account,omitempty"`
}

// Unmapped carries what OCSF has no attribute for, under "nhiwatch".
type Unmapped struct {
	NHIWatch Details `json:"nhiwatch"`
}

// Details are the report's lists and the least-privilege policy.
type Details struct {
	Kind           string   `json:"identity_kind,omitempty"`
	Owner          string   `json:"owner,omitempty"`
	Used           []string `json:"used"`
	Unused         []string `json:"unused"`
	Denied         []string `json:"denied"`
	Ungranted      []string `json:"ungranted"`
	SensitiveUsed  []string `json:"sensitive_used"`
	Utilization    float64  `json:"utilization"`
	Admin          bool     `json:"admin"`
	DenyGrants     []string `json:"deny_grants,omitempty"`
	LeastPrivilege any      `json:"least_privilege"`
}

var severityNames = map[int]string{1: "Informational", 2: "Low", 3: "Medium", 4: "High"}

// Render returns the IAM Analysis Finding of one report as JSON.
func Render(r usage.Report, opts Options) ([]byte, error) {
	d, err := Build(r, opts)
	if err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// Build returns the IAM Analysis Finding of one report.
func Build(r usage.Report, opts Options) (*Document, error) {
	if r.Identity == "" {
		return nil, errors.New("ocsf: report without an identity")
	}
	if opts.Time.IsZero() {
		return nil, errors.New("ocsf: the analysis time is required")
	}
	now := opts.Time.UTC()
	sev := severity(r)
	uid := events.FindingID(Analytic, r.Identity, "", now.Format(time.DateOnly))
	d := &Document{
		ActivityID: 1, ActivityName: "Create",
		CategoryUID: CategoryUID, CategoryName: "Findings",
		ClassUID: ClassUID, ClassName: "IAM Analysis Finding",
		TypeUID: ClassUID*100 + 1, TypeName: "IAM Analysis Finding: Create",
		SeverityID: sev, Severity: severityNames[sev],
		StatusID: 1, Status: "New",
		ConfidenceID: 3, Confidence: "High", // observed use against the grants in force
		Time:    now.UnixMilli(),
		Message: summary(r),
		Metadata: Metadata{
			Product: Product{Name: "nhiwatch", VendorName: "nhiwatch", Version: opts.ProductVersion, Feature: Feature{Name: "usage-vs-granted"}},
			Version: Version, UID: uid, LoggedTime: now.UnixMilli(),
		},
		FindingInfo: FindingInfo{
			UID: uid, Title: title(r), Desc: summary(r), Types: types(r),
			Analytic:    AnalyticInfo{TypeID: 3, Type: "Statistical", Name: Analytic, UID: Analytic},
			CreatedTime: now.UnixMilli(), DataSources: dataSources(r.Provider),
		},
		User:                      user(r),
		IdentityActivityMetrics:   ActivityMetrics{ProgrammaticCredentials: credentials(r)},
		PermissionAnalysisResults: permissionAnalyses(r),
		Resources:                 resources(r),
		Unmapped: Unmapped{NHIWatch: Details{
			Kind: r.Kind, Owner: r.Owner, Used: r.Used, Unused: r.Unused, Denied: r.Denied, Ungranted: r.Ungranted,
			SensitiveUsed: r.SensitiveUsed, Utilization: r.Utilization, Admin: r.Admin, DenyGrants: denyGrants(r),
			LeastPrivilege: r.LeastPrivilege,
		}},
	}
	if r.Owner != "" {
		d.FindingInfo.Tags = []KeyValue{{Name: "owner", Value: r.Owner}}
	}
	if r.FirstSeen != nil && r.LastSeen != nil {
		d.StartTime, d.EndTime = r.FirstSeen.UnixMilli(), r.LastSeen.UnixMilli()
		d.FindingInfo.FirstSeenTime, d.FindingInfo.LastSeenTime = d.StartTime, d.EndTime
		d.IdentityActivityMetrics.FirstSeenTime, d.IdentityActivityMetrics.LastSeenTime = d.StartTime, d.EndTime
	}
	for _, u := range r.Uses {
		d.Count += u.Count
	}
	if rem := remediation(r); rem != nil {
		d.Remediation = rem
	}
	if c := cloud(r); c != nil {
		d.Cloud, d.Metadata.Profiles = c, []string{"cloud"}
	}
	if d.PermissionAnalysisResults == nil {
		d.PermissionAnalysisResults = []PermissionAnalysis{}
	}
	return d, nil
}

// severity: standing admin is high, admin in use medium, unused grants or refused requests
// low, the rest informational.
func severity(r usage.Report) int {
	switch {
	case len(r.Granted) == 0 && len(r.Denied) == 0:
		return 1
	case r.Admin && len(r.SensitiveUsed) == 0:
		return 4
	case r.Admin:
		return 3
	case len(r.Unused) > 0 || len(r.Denied) > 0 || len(r.Ungranted) > 0:
		return 2
	}
	return 1
}

func displayName(r usage.Report) string {
	if r.Name != "" {
		return r.Name
	}
	return r.Identity
}

func title(r usage.Report) string {
	switch {
	case r.Admin && len(r.SensitiveUsed) == 0:
		return "Admin-equivalent grants unused by " + displayName(r)
	case len(r.Unused) > 0:
		return "Unused grants of " + displayName(r)
	}
	return "Usage against grants of " + displayName(r)
}

func summary(r usage.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s used %d of %d granted permission patterns (%.0f%%)", displayName(r),
		len(r.Granted)-len(r.Unused), len(r.Granted), r.Utilization*100)
	if n := len(r.Used); n > 0 {
		fmt.Fprintf(&b, " with %s", plural(n, "permission"))
	}
	fmt.Fprintf(&b, "; %s unused", plural(len(r.Unused), "pattern"))
	if len(r.Denied) > 0 {
		fmt.Fprintf(&b, "; refused %s beyond its grants", plural(len(r.Denied), "permission"))
	}
	if len(r.Ungranted) > 0 {
		fmt.Fprintf(&b, "; used %s no imported grant allows", plural(len(r.Ungranted), "permission"))
	}
	if r.Admin {
		if len(r.SensitiveUsed) == 0 {
			b.WriteString("; it holds admin-equivalent grants and made no admin action")
		} else {
			fmt.Fprintf(&b, "; it holds admin-equivalent grants and used %s", plural(len(r.SensitiveUsed), "sensitive permission"))
		}
	}
	b.WriteString(".")
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func types(r usage.Report) []string {
	out := []string{"IAM Analysis", "Usage vs Granted"}
	if len(r.Unused) > 0 {
		out = append(out, "Unused Permissions")
	}
	if r.Admin && len(r.SensitiveUsed) == 0 {
		out = append(out, "Standing Admin")
	}
	return out
}

func dataSources(provider string) []string {
	switch provider {
	case "aws":
		return []string{"AWS CloudTrail", "AWS IAM authorization details"}
	case "gcp":
		return []string{"Google Cloud Audit Logs", "Google Cloud IAM policies"}
	case "k8s":
		return []string{"Kubernetes audit log", "Kubernetes RBAC"}
	}
	return nil
}

func user(r usage.Report) User {
	u := User{UID: r.Identity, Name: r.Name, Type: r.Kind}
	switch k, _ := events.ParseIdentityKind(r.Kind); {
	case k == events.IdentityKind_IDENTITY_KIND_HUMAN:
		u.TypeID = 1 // User
	case k.IsNHI():
		u.TypeID = 99 // Other: the kind is in type
	}
	if r.Account != "" {
		u.Account = account(r)
	}
	return u
}

func account(r usage.Report) *Account {
	a := &Account{UID: r.Account}
	switch r.Provider {
	case "aws":
		a.Type, a.TypeID = "AWS Account", 10
	case "gcp":
		a.Type, a.TypeID = "GCP Project", 11
	case "k8s":
		a.Type, a.TypeID = "Kubernetes Cluster", 99
	}
	return a
}

func cloud(r usage.Report) *Cloud {
	switch r.Provider {
	case "aws":
		return &Cloud{Provider: "AWS", Account: accountOrNil(r)}
	case "gcp":
		return &Cloud{Provider: "GCP", Account: accountOrNil(r)}
	}
	return nil // a Kubernetes cluster is not necessarily a cloud's
}

func accountOrNil(r usage.Report) *Account {
	if r.Account == "" {
		return nil
	}
	return account(r)
}

func credentials(r usage.Report) []Credential {
	var out []Credential
	for _, c := range r.Credentials {
		cred := Credential{UID: c.ID, Type: credentialType(c.ID)}
		if c.LastUsed != nil {
			cred.LastUsedTime = c.LastUsed.UnixMilli()
		}
		out = append(out, cred)
	}
	return out
}

func credentialType(id string) string {
	switch {
	case strings.HasPrefix(id, "aws:key:"), strings.Contains(id, "#access_key_"):
		return "Access Key"
	case strings.HasPrefix(id, "aws:session:"):
		return "Session Credentials"
	case strings.HasPrefix(id, "gcp:key:"):
		return "Service Account Key"
	case strings.HasPrefix(id, "k8s:") && strings.Contains(id, ":token:"):
		return "Service Account Token"
	}
	return ""
}

// permissionAnalyses is one result per Allow grant as the identity holds it (a policy's
// statements together): its patterns, how many no use matched, and how many of its services
// no use touched.
func permissionAnalyses(r usage.Report) []PermissionAnalysis {
	type held struct {
		grant, via       string
		scopes           []string
		perms, used      map[string]bool
		admin, unresolvd bool
	}
	var order []string
	byKey := map[string]*held{}
	for _, g := range r.Grants {
		if g.Deny {
			continue
		}
		k := g.Grant + "\x00" + g.Via
		h, ok := byKey[k]
		if !ok {
			h = &held{grant: g.Grant, via: g.Via, perms: map[string]bool{}, used: map[string]bool{}}
			byKey[k] = h
			order = append(order, k)
		}
		h.scopes = append(h.scopes, g.Scope)
		for _, p := range g.Permissions {
			h.perms[p] = true
		}
		for _, p := range g.Used {
			h.used[p] = true
		}
		h.admin, h.unresolvd = h.admin || g.Admin, h.unresolvd || g.Unresolved
	}
	var out []PermissionAnalysis
	for _, k := range order {
		h := byKey[k]
		perms := make([]string, 0, len(h.perms))
		for p := range h.perms {
			perms = append(perms, p)
		}
		sort.Strings(perms)
		unused, services, usedServices := 0, map[string]bool{}, map[string]bool{}
		for _, p := range perms {
			svc := service(r.Provider, p)
			services[svc] = true
			if h.used[p] {
				usedServices[svc] = true
			} else {
				unused++
			}
		}
		desc := "held " + via(h.via) + ", on " + strings.Join(h.scopes, "; ")
		if h.admin {
			desc += "; admin-equivalent"
		}
		if h.unresolvd {
			desc += "; its definition is not in the imported inventory"
		}
		typ := policyType(r.Provider, h.grant)
		out = append(out, PermissionAnalysis{
			Policy:                Policy{Name: h.grant, UID: policyUID(r.Identity, h.grant, h.via, typ), Type: typ, Desc: desc, IsApplied: true},
			GrantedPrivileges:     perms,
			UnusedPrivilegesCount: unused,
			UnusedServicesCount:   len(services) - len(usedServices),
		})
	}
	return out
}

// policyUID is unique per policy: an inline policy's name is unique only within its holder.
func policyUID(identity, grant, via, typ string) string {
	if typ != "Inline Policy" {
		return grant
	}
	holder := identity
	if g, ok := strings.CutPrefix(via, "group:"); ok {
		holder, _, _ = strings.Cut(g, ",")
		holder = "group/" + holder
	}
	return "inline:" + holder + ":" + grant
}

func via(v string) string {
	if v == "direct" {
		return "directly"
	}
	return "through " + strings.ReplaceAll(v, ",", ", ")
}

// service is the service a permission pattern belongs to: the AWS service prefix, the GCP
// service (first dotted part), the Kubernetes resource.
func service(provider, perm string) string {
	switch provider {
	case "aws":
		svc, _, _ := strings.Cut(perm, ":")
		return strings.ToLower(svc)
	case "gcp":
		svc, _, _ := strings.Cut(perm, ".")
		return svc
	case "k8s":
		_, res, _ := strings.Cut(perm, " ")
		res, _, _ = strings.Cut(res, "/")
		res, _, _ = strings.Cut(res, " ")
		return res
	}
	return perm
}

func policyType(provider, grant string) string {
	switch {
	case strings.HasPrefix(grant, "arn:aws:iam::aws:policy/"):
		return "AWS Managed Policy"
	case strings.HasPrefix(grant, "arn:aws:iam::"):
		return "Customer Managed Policy"
	case provider == "aws":
		return "Inline Policy"
	case strings.HasPrefix(grant, "roles/"):
		return "GCP Predefined Role"
	case strings.Contains(grant, "/roles/"):
		return "GCP Custom Role"
	case strings.HasPrefix(grant, "ClusterRole/"):
		return "Kubernetes ClusterRole"
	case strings.HasPrefix(grant, "Role/"):
		return "Kubernetes Role"
	}
	return "Identity Policy"
}

func denyGrants(r usage.Report) []string {
	var out []string
	for _, g := range r.Grants {
		if g.Deny {
			out = append(out, g.Grant)
		}
	}
	return out
}

// resources are the resources the identity's uses touched.
func resources(r usage.Report) []Resource {
	seen := map[string]bool{}
	var out []Resource
	add := func(res Resource) {
		if len(out) >= maxResources || seen[res.UID+"\x00"+res.Namespace] {
			return
		}
		seen[res.UID+"\x00"+res.Namespace] = true
		out = append(out, res)
	}
	for _, u := range r.Uses {
		for _, id := range u.Resources {
			add(Resource{UID: id, Type: resourceType(r.Provider, id), Labels: []string{"used"}})
		}
		if r.Provider == "k8s" {
			for _, ns := range u.Namespaces {
				if ns != "" {
					add(Resource{UID: "namespaces/" + ns, Type: "Namespace", Namespace: ns, Labels: []string{"used"}})
				}
			}
		}
	}
	return out
}

func resourceType(provider, id string) string {
	if provider == "aws" {
		if parts := strings.SplitN(id, ":", 6); len(parts) == 6 {
			return "AWS " + parts[2]
		}
	}
	return ""
}

func remediation(r usage.Report) *Remediation {
	if len(r.Unused) == 0 && !r.Admin {
		return nil
	}
	var desc string
	switch r.Provider {
	case "aws":
		desc = "Replace the identity's policies with the least-privilege policy document its observed use needs (unmapped.nhiwatch.least_privilege)"
	case "gcp":
		desc = "Replace the identity's role bindings with the roles, or the custom role, its observed use needs (unmapped.nhiwatch.least_privilege)"
	case "k8s":
		desc = "Replace the identity's RoleBindings and ClusterRoleBindings with the Role and ClusterRole its observed use needs (unmapped.nhiwatch.least_privilege)"
	default:
		desc = "Remove the grants no use needed"
	}
	desc += fmt.Sprintf("; it drops %d unused permission patterns.", len(r.Unused))
	if r.Admin {
		desc += " Remove the admin-equivalent grants and give admin just in time when a task needs it."
	}
	return &Remediation{Desc: desc, References: []string{
		"https://owasp.org/www-project-non-human-identities-top-10/",
	}}
}
