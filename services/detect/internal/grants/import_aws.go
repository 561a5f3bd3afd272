package grants

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// ErrFormat marks an inventory file that cannot be read in the format it claims.
var ErrFormat = errors.New("unreadable inventory snapshot")

// Snapshot formats.
const (
	FormatAWSAuthorizationDetails = "aws_authorization_details"
	FormatAWSCredentialReport     = "aws_credential_report"
	FormatGCPIAMPolicy            = "gcp_iam_policy"
	FormatGCPRoles                = "gcp_roles"
	FormatK8sRBAC                 = "k8s_rbac"
)

type awsInlinePolicy struct {
	PolicyName     string          `json:"PolicyName"`
	PolicyDocument json.RawMessage `json:"PolicyDocument"`
}

type awsAttached struct {
	PolicyName string `json:"PolicyName"`
	PolicyArn  string `json:"PolicyArn"`
}

type awsBoundary struct {
	PermissionsBoundaryArn string `json:"PermissionsBoundaryArn"`
}

type awsTag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

type awsAuthDetails struct {
	UserDetailList []struct {
		UserName                string            `json:"UserName"`
		Arn                     string            `json:"Arn"`
		CreateDate              string            `json:"CreateDate"`
		UserPolicyList          []awsInlinePolicy `json:"UserPolicyList"`
		GroupList               []string          `json:"GroupList"`
		AttachedManagedPolicies []awsAttached     `json:"AttachedManagedPolicies"`
		PermissionsBoundary     *awsBoundary      `json:"PermissionsBoundary"`
		Tags                    []awsTag          `json:"Tags"`
	} `json:"UserDetailList"`
	GroupDetailList []struct {
		GroupName               string            `json:"GroupName"`
		Arn                     string            `json:"Arn"`
		GroupPolicyList         []awsInlinePolicy `json:"GroupPolicyList"`
		AttachedManagedPolicies []awsAttached     `json:"AttachedManagedPolicies"`
	} `json:"GroupDetailList"`
	RoleDetailList []struct {
		RoleName                string            `json:"RoleName"`
		Path                    string            `json:"Path"`
		Arn                     string            `json:"Arn"`
		CreateDate              string            `json:"CreateDate"`
		RolePolicyList          []awsInlinePolicy `json:"RolePolicyList"`
		AttachedManagedPolicies []awsAttached     `json:"AttachedManagedPolicies"`
		PermissionsBoundary     *awsBoundary      `json:"PermissionsBoundary"`
		Tags                    []awsTag          `json:"Tags"`
	} `json:"RoleDetailList"`
	Policies []struct {
		PolicyName        string `json:"PolicyName"`
		Arn               string `json:"Arn"`
		DefaultVersionID  string `json:"DefaultVersionId"`
		PolicyVersionList []struct {
			Document         json.RawMessage `json:"Document"`
			VersionID        string          `json:"VersionId"`
			IsDefaultVersion bool            `json:"IsDefaultVersion"`
		} `json:"PolicyVersionList"`
	} `json:"Policies"`
}

// ImportAWSAuthorizationDetails reads the output of `aws iam get-account-authorization-details`
// (the CLI's merged pages, or one raw API page; policy documents URL-encoded or decoded).
func ImportAWSAuthorizationDetails(data []byte, taken time.Time) (*Snapshot, error) {
	var d awsAuthDetails
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%w: aws authorization details: %v", ErrFormat, err)
	}
	s := &Snapshot{Provider: "aws", Format: FormatAWSAuthorizationDetails, Taken: taken}
	account := ""
	noteAccount := func(arn string) {
		if account == "" {
			account = arnAccount(arn)
		}
	}
	inline := func(principal string, list []awsInlinePolicy) error {
		for _, p := range list {
			doc, err := ParsePolicyDocument(p.PolicyDocument)
			if err != nil {
				return fmt.Errorf("inline policy %.64q: %w", p.PolicyName, err)
			}
			key := InlinePolicyKey(principal, p.PolicyName)
			s.Definitions = append(s.Definitions, Definition{Key: key, Name: p.PolicyName, Kind: KindAWSInlinePolicy, Statements: doc.Statements})
			s.Bindings = append(s.Bindings, Binding{Principal: principal, Definition: key})
		}
		return nil
	}
	attached := func(principal string, list []awsAttached) {
		for _, a := range list {
			if a.PolicyArn != "" {
				s.Bindings = append(s.Bindings, Binding{Principal: principal, Definition: a.PolicyArn})
			}
		}
	}
	groupARN := map[string]string{}
	for _, g := range d.GroupDetailList {
		if g.Arn == "" {
			return nil, fmt.Errorf("%w: a group has no Arn", ErrFormat)
		}
		noteAccount(g.Arn)
		principal := events.AWSIdentityID(g.Arn)
		groupARN[g.GroupName] = principal
		if err := inline(principal, g.GroupPolicyList); err != nil {
			return nil, fmt.Errorf("%w: group %.64q: %v", ErrFormat, g.GroupName, err)
		}
		attached(principal, g.AttachedManagedPolicies)
	}
	for _, u := range d.UserDetailList {
		if u.Arn == "" {
			return nil, fmt.Errorf("%w: a user has no Arn", ErrFormat)
		}
		noteAccount(u.Arn)
		id := events.AWSIdentityID(u.Arn)
		s.Identities = append(s.Identities, Identity{
			ID: id, Provider: "aws", Name: u.UserName, Account: arnAccount(u.Arn),
			Created: parseTime(u.CreateDate), Owner: ownerTag(u.Tags),
		})
		if err := inline(id, u.UserPolicyList); err != nil {
			return nil, fmt.Errorf("%w: user %.64q: %v", ErrFormat, u.UserName, err)
		}
		attached(id, u.AttachedManagedPolicies)
		if u.PermissionsBoundary != nil && u.PermissionsBoundary.PermissionsBoundaryArn != "" {
			s.Bindings = append(s.Bindings, Binding{Principal: id, Definition: u.PermissionsBoundary.PermissionsBoundaryArn, Boundary: true})
		}
		for _, g := range u.GroupList {
			gp, ok := groupARN[g]
			if !ok {
				gp = events.AWSIdentityID("arn:aws:iam::" + arnAccount(u.Arn) + ":group/" + g)
			}
			s.Memberships = append(s.Memberships, Membership{Member: id, Group: gp})
		}
	}
	for _, r := range d.RoleDetailList {
		if r.Arn == "" {
			return nil, fmt.Errorf("%w: a role has no Arn", ErrFormat)
		}
		noteAccount(r.Arn)
		id := events.AWSIdentityID(r.Arn)
		s.Identities = append(s.Identities, Identity{
			ID: id, Provider: "aws", Kind: awsRoleKind(r.RoleName, r.Path), Name: r.RoleName,
			Account: arnAccount(r.Arn), Created: parseTime(r.CreateDate), Owner: ownerTag(r.Tags),
		})
		if err := inline(id, r.RolePolicyList); err != nil {
			return nil, fmt.Errorf("%w: role %.64q: %v", ErrFormat, r.RoleName, err)
		}
		attached(id, r.AttachedManagedPolicies)
		if r.PermissionsBoundary != nil && r.PermissionsBoundary.PermissionsBoundaryArn != "" {
			s.Bindings = append(s.Bindings, Binding{Principal: id, Definition: r.PermissionsBoundary.PermissionsBoundaryArn, Boundary: true})
		}
	}
	for _, p := range d.Policies {
		if p.Arn == "" {
			continue
		}
		noteAccount(p.Arn)
		def := Definition{Key: p.Arn, Name: p.Arn, Kind: KindAWSManagedPolicy}
		found := false
		for _, v := range p.PolicyVersionList {
			doc, err := ParsePolicyDocument(v.Document)
			if err != nil {
				return nil, fmt.Errorf("%w: policy %.128q %.16s: %v", ErrFormat, p.Arn, v.VersionID, err)
			}
			if v.VersionID != "" {
				if def.Versions == nil {
					def.Versions = map[string][]Statement{}
				}
				def.Versions[v.VersionID] = doc.Statements
			}
			if !found && (v.IsDefaultVersion || p.DefaultVersionID != "" && v.VersionID == p.DefaultVersionID) {
				def.Statements, def.Version, found = doc.Statements, v.VersionID, true
			}
		}
		if found {
			s.Definitions = append(s.Definitions, def)
		}
	}
	if account == "" || account == "aws" {
		return nil, fmt.Errorf("%w: aws authorization details name no account (no user, group, role or customer policy)", ErrFormat)
	}
	s.Scope = "aws:" + account
	return s, nil
}

// InlinePolicyKey is the definition key of an inline policy of a principal.
func InlinePolicyKey(principal, name string) string { return "inline:" + principal + ":" + name }

// arnAccount returns the account field of an ARN.
func arnAccount(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}

// awsRoleKind classifies a role: SSO permission-set roles are people, service-linked roles
// are the platform, every other role is a workload's.
func awsRoleKind(name, path string) string {
	switch {
	case strings.HasPrefix(name, "AWSReservedSSO_"):
		return events.IdentityKind_IDENTITY_KIND_HUMAN.Label()
	case strings.HasPrefix(path, "/aws-service-role/"):
		return events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE.Label()
	}
	return events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE.Label()
}

// ownerTag returns the value of an owner tag, the convention most tagging policies use.
func ownerTag(tags []awsTag) string {
	for _, t := range tags {
		switch strings.ToLower(t.Key) {
		case "owner", "nhiwatch:owner", "team-owner":
			return t.Value
		}
	}
	return ""
}

func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05-07:00", "2006-01-02T15:04:05Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// ImportAWSCredentialReport reads an IAM credential report: the CSV itself, or the JSON
// of `aws iam get-credential-report` whose Content is the base64 CSV.
func ImportAWSCredentialReport(data []byte, taken time.Time) (*Snapshot, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var env struct {
			Content       string `json:"Content"`
			GeneratedTime string `json:"GeneratedTime"`
		}
		if err := json.Unmarshal(trimmed, &env); err != nil {
			return nil, fmt.Errorf("%w: credential report JSON: %v", ErrFormat, err)
		}
		csvData, err := base64.StdEncoding.DecodeString(env.Content)
		if err != nil {
			return nil, fmt.Errorf("%w: credential report Content is not base64", ErrFormat)
		}
		if t := parseTime(env.GeneratedTime); !t.IsZero() {
			taken = t
		}
		trimmed = csvData
	}
	r := csv.NewReader(bytes.NewReader(trimmed))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: credential report header: %v", ErrFormat, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"user", "arn", "access_key_1_active", "access_key_1_last_rotated"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("%w: credential report has no %s column", ErrFormat, need)
		}
	}
	s := &Snapshot{Provider: "aws", Format: FormatAWSCredentialReport, Taken: taken}
	account := ""
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: credential report line %d: %v", ErrFormat, line, err)
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		arn := get("arn")
		if get("user") == "<root_account>" || !strings.Contains(arn, ":user/") {
			continue
		}
		if account == "" {
			account = arnAccount(arn)
		}
		id := events.AWSIdentityID(arn)
		keys := false
		for _, slot := range []string{"1", "2"} {
			active := get("access_key_"+slot+"_active") == "true"
			rotated := parseTime(get("access_key_" + slot + "_last_rotated"))
			if !active && rotated.IsZero() {
				continue
			}
			keys = keys || active
			s.Credentials = append(s.Credentials, Credential{
				ID: id + "#access_key_" + slot, Identity: id, Active: active, LastRotated: rotated,
				LastUsed: parseTime(get("access_key_" + slot + "_last_used_date")), Source: FormatAWSCredentialReport,
			})
		}
		kind := events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER.Label()
		if get("password_enabled") == "true" && !keys {
			kind = events.IdentityKind_IDENTITY_KIND_HUMAN.Label()
		}
		s.Identities = append(s.Identities, Identity{
			ID: id, Provider: "aws", Kind: kind, Name: get("user"), Account: arnAccount(arn),
			Created: parseTime(get("user_creation_time")),
		})
	}
	if account == "" {
		return nil, fmt.Errorf("%w: credential report lists no IAM user", ErrFormat)
	}
	s.Scope = "aws-credentials:" + account
	return s, nil
}
