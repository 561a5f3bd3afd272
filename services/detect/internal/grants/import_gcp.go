package grants

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

type gcpPolicy struct {
	Bindings []struct {
		Role      string          `json:"role"`
		Members   []string        `json:"members"`
		Condition json.RawMessage `json:"condition"`
	} `json:"bindings"`
	Etag    string `json:"etag"`
	Version int    `json:"version"`
}

// ImportGCPIAMPolicy reads GCP IAM policies: the output of `gcloud projects|folders|
// organizations get-iam-policy --format=json` (which does not name its resource: resource
// says which, e.g. "projects/my-project"; empty applies it everywhere), the list of
// `gcloud projects get-ancestors-iam-policy --format=json` ({id, type, policy} per
// ancestor), or the list of `gcloud asset search-all-iam-policies --format=json`.
func ImportGCPIAMPolicy(data []byte, resource string, taken time.Time) ([]*Snapshot, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty GCP IAM policy", ErrFormat)
	}
	if trimmed[0] == '{' {
		var p gcpPolicy
		if err := json.Unmarshal(trimmed, &p); err != nil {
			return nil, fmt.Errorf("%w: GCP IAM policy: %v", ErrFormat, err)
		}
		s, err := gcpPolicySnapshot(p, resource, taken)
		if err != nil {
			return nil, err
		}
		return []*Snapshot{s}, nil
	}
	var list []struct {
		// get-ancestors-iam-policy
		ID   string `json:"id"`
		Type string `json:"type"`
		// search-all-iam-policies
		Resource string `json:"resource"`
		Policy   gcpPolicy
	}
	if err := json.Unmarshal(trimmed, &list); err != nil {
		return nil, fmt.Errorf("%w: GCP IAM policy list: %v", ErrFormat, err)
	}
	var out []*Snapshot
	for i, it := range list {
		res := ""
		switch {
		case it.ID != "" && it.Type != "":
			res = gcpCollection(it.Type) + "/" + it.ID
		case it.Resource != "":
			res = strings.TrimPrefix(it.Resource, "//cloudresourcemanager.googleapis.com/")
		default:
			return nil, fmt.Errorf("%w: GCP IAM policy list item %d names no resource", ErrFormat, i)
		}
		s, err := gcpPolicySnapshot(it.Policy, res, taken)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func gcpCollection(t string) string {
	switch strings.ToLower(t) {
	case "project":
		return "projects"
	case "folder":
		return "folders"
	case "organization":
		return "organizations"
	}
	return strings.ToLower(t) + "s"
}

func gcpPolicySnapshot(p gcpPolicy, resource string, taken time.Time) (*Snapshot, error) {
	scope := resource
	if scope == "" {
		scope = "*"
	}
	s := &Snapshot{Scope: "gcp:" + scope, Provider: "gcp", Format: FormatGCPIAMPolicy, Taken: taken}
	seen := map[string]bool{}
	for i, b := range p.Bindings {
		if b.Role == "" {
			return nil, fmt.Errorf("%w: GCP binding %d has no role", ErrFormat, i)
		}
		cond := strings.TrimSpace(string(b.Condition))
		for _, m := range b.Members {
			principal := GCPPrincipal(m)
			if principal == "" {
				continue
			}
			s.Bindings = append(s.Bindings, Binding{
				Principal: principal, Definition: b.Role, Scope: scope,
				Conditional: cond != "" && cond != "null" && cond != "{}",
			})
			if strings.HasPrefix(m, "serviceAccount:") && !seen[principal] {
				seen[principal] = true
				s.Identities = append(s.Identities, Identity{
					ID: principal, Provider: "gcp", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT.Label(),
					Name: strings.TrimPrefix(m, "serviceAccount:"), Account: gcpSAProject(m),
				})
			}
		}
	}
	return s, nil
}

// GCPPrincipal maps an IAM policy member to a principal: serviceAccount:e → gcp:e,
// user:e → gcp:user:e, and the rest (group:, domain:, principalSet://, allUsers) kept as
// gcp:<member>. Deleted members (deleted:…) hold nothing and map to "".
func GCPPrincipal(member string) string {
	switch {
	case strings.HasPrefix(member, "deleted:"):
		return ""
	case strings.HasPrefix(member, "serviceAccount:"):
		return events.GCPServiceAccountID(strings.TrimPrefix(member, "serviceAccount:"))
	case strings.HasPrefix(member, "user:"):
		return events.GCPUserID(strings.TrimPrefix(member, "user:"))
	}
	return "gcp:" + member
}

// gcpSAProject returns the project of a user-managed service account email
// (name@project.iam.gserviceaccount.com).
func gcpSAProject(member string) string {
	_, domain, ok := strings.Cut(member, "@")
	if p, ok2 := strings.CutSuffix(domain, ".iam.gserviceaccount.com"); ok && ok2 {
		return p
	}
	return ""
}

type gcpRole struct {
	Name                string   `json:"name"`
	Title               string   `json:"title"`
	IncludedPermissions []string `json:"includedPermissions"`
	Deleted             bool     `json:"deleted"`
}

// ImportGCPRoles reads role definitions: `gcloud iam roles describe --format=json` (one
// role) or `gcloud iam roles list --format=json` (a list; roles listed without their
// includedPermissions are skipped, since list only shows them with --show-deleted or the
// FULL view). parent names the scope (e.g. "projects/p"; "" for predefined roles).
func ImportGCPRoles(data []byte, parent string, taken time.Time) (*Snapshot, error) {
	trimmed := bytes.TrimSpace(data)
	var roles []gcpRole
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var r gcpRole
		if err := json.Unmarshal(trimmed, &r); err != nil {
			return nil, fmt.Errorf("%w: GCP role: %v", ErrFormat, err)
		}
		roles = []gcpRole{r}
	} else if err := json.Unmarshal(trimmed, &roles); err != nil {
		return nil, fmt.Errorf("%w: GCP role list: %v", ErrFormat, err)
	}
	s := &Snapshot{Provider: "gcp", Format: FormatGCPRoles, Taken: taken}
	names := []string{}
	for i, r := range roles {
		if r.Name == "" {
			return nil, fmt.Errorf("%w: GCP role %d has no name", ErrFormat, i)
		}
		if r.Deleted || len(r.IncludedPermissions) == 0 {
			continue
		}
		s.Definitions = append(s.Definitions, Definition{Key: r.Name, Name: r.Name, Kind: KindGCPRole, Permissions: r.IncludedPermissions})
		names = append(names, r.Name)
	}
	if parent == "" && len(names) > 0 {
		parent = gcpRoleParent(names[0])
	}
	s.Scope = "gcp-roles:" + parent
	if len(names) == 1 {
		s.Scope = "gcp-roles:" + names[0]
	}
	return s, nil
}

// gcpRoleParent is the parent of a role name: projects/p for projects/p/roles/r,
// "predefined" for roles/r.
func gcpRoleParent(name string) string {
	if i := strings.Index(name, "/roles/"); i > 0 {
		return name[:i]
	}
	return "predefined"
}
