package grants

import (
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Definition kinds.
const (
	KindAWSManagedPolicy = "aws_managed_policy"
	KindAWSInlinePolicy  = "aws_inline_policy"
	KindGCPRole          = "gcp_role"
	KindK8sClusterRole   = "k8s_clusterrole"
	KindK8sRole          = "k8s_role"
)

// Definition is what a grant carries: an AWS policy, a GCP role, a Kubernetes (Cluster)Role.
type Definition struct {
	// Key is unique in the model: a policy ARN, "inline:<principal>:<name>", a GCP role
	// name, "k8s:<cluster>:clusterrole:<name>" or "k8s:<cluster>:role:<ns>:<name>".
	Key  string `json:"key"`
	Name string `json:"name"`
	Kind string `json:"kind"`
	// AWS policy statements (of the default version for a managed policy).
	Statements []Statement `json:"statements,omitempty"`
	// Version is the default version id of a customer managed policy, and Versions the
	// statements of every version the export listed, so that SetDefaultPolicyVersion can
	// switch between them.
	Version  string                 `json:"version,omitempty"`
	Versions map[string][]Statement `json:"versions,omitempty"`
	// GCP permissions; patterns with `*` are allowed (the basic roles are patterns).
	Permissions []string `json:"permissions,omitempty"`
	// GCP permissions a pattern role leaves out (roles/editor has no setIamPolicy).
	Excluded []string `json:"excluded,omitempty"`
	// Kubernetes rules.
	Rules []Rule `json:"rules,omitempty"`
}

// Rule is a Kubernetes RBAC PolicyRule.
type Rule struct {
	Verbs           []string `json:"verbs"`
	APIGroups       []string `json:"apiGroups,omitempty"`
	Resources       []string `json:"resources,omitempty"`
	ResourceNames   []string `json:"resourceNames,omitempty"`
	NonResourceURLs []string `json:"nonResourceURLs,omitempty"`
}

// Binding gives a principal what a definition carries.
type Binding struct {
	// Principal is a canonical identity id, or a group: aws:<group ARN>,
	// k8s:<cluster>:group:<name>, gcp:group:<email>, gcp:domain:<domain>, …
	Principal string `json:"principal"`
	// Definition is the Key of the definition.
	Definition string `json:"definition"`
	// Name is where the binding comes from when it has one of its own (a RoleBinding).
	Name string `json:"name,omitempty"`
	// Scope is where it applies: a GCP resource (projects/p), a Kubernetes namespace, or
	// "*" everywhere. AWS policies carry their scope in their statements' resources.
	Scope string `json:"scope,omitempty"`
	// Boundary marks an AWS permissions boundary: it limits, it grants nothing.
	Boundary bool `json:"boundary,omitempty"`
	// Conditional marks a GCP binding with an IAM condition (not evaluated).
	Conditional bool `json:"conditional,omitempty"`
}

// Membership puts a member in a group (an IAM user in an IAM group).
type Membership struct {
	Member string `json:"member"`
	Group  string `json:"group"`
}

// Identity is a principal an inventory lists.
type Identity struct {
	ID       string    `json:"id"`
	Provider string    `json:"provider"`
	Kind     string    `json:"kind,omitempty"`
	Name     string    `json:"name,omitempty"`
	Account  string    `json:"account,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	// Owner comes from the inventory's own tags (an "owner" tag on an IAM role or user).
	Owner string `json:"owner,omitempty"`
}

// Credential is a long-term credential an inventory or an event showed: an access key slot
// of an IAM user, a service-account key.
type Credential struct {
	// ID is the canonical credential id when known (aws:key:AKIA…, gcp:key:…), else the
	// identity id and slot (aws:arn:…:user/u#access_key_1).
	ID          string    `json:"id"`
	Identity    string    `json:"identity"`
	Active      bool      `json:"active"`
	LastRotated time.Time `json:"last_rotated,omitzero"`
	LastUsed    time.Time `json:"last_used,omitzero"`
	Source      string    `json:"source,omitempty"`
}

// Snapshot is the grants of one scope as one inventory export showed them. Importing a
// snapshot replaces everything an earlier snapshot of the same scope said.
type Snapshot struct {
	// Scope names what the export covers: aws:<account>, aws-credentials:<account>,
	// gcp:<resource>, gcp-roles:<parent>, k8s:<cluster>.
	Scope    string `json:"scope"`
	Provider string `json:"provider"`
	// Format is the export format it was read from.
	Format string `json:"format"`
	// Taken is when the export was taken, or imported when the export does not say.
	Taken       time.Time    `json:"taken"`
	Definitions []Definition `json:"definitions,omitempty"`
	Bindings    []Binding    `json:"bindings,omitempty"`
	Memberships []Membership `json:"memberships,omitempty"`
	Identities  []Identity   `json:"identities,omitempty"`
	Credentials []Credential `json:"credentials,omitempty"`
}

// Request is one use of a permission, as an event shows it.
type Request struct {
	Identity string
	Provider events.Provider
	// Permission is the event's action.permission.
	Permission string
	// Resources are the event's resource ids (ARNs for AWS).
	Resources []string
	// ResourceNames are the event's resource names (Kubernetes resourceNames).
	ResourceNames []string
	// Account is the AWS account, GCP project or Kubernetes cluster.
	Account   string
	Namespace string
	// APIGroup is the Kubernetes API group ("" for the core group).
	APIGroup string
	// Groups are the identity's Kubernetes groups.
	Groups []string
	// UserName fills ${aws:username}.
	UserName string
}

// RequestFromEvent builds the request an event made.
func RequestFromEvent(ev *events.Event) Request {
	r := Request{
		Identity:   ev.GetIdentity().GetId(),
		Provider:   ev.Provider,
		Permission: ev.GetAction().GetPermission(),
		Account:    ev.Account,
		Groups:     ev.GetIdentity().GetGroups(),
	}
	for _, res := range ev.Resources {
		if res.Id != "" {
			r.Resources = append(r.Resources, res.Id)
		}
		if res.Name != "" {
			r.ResourceNames = append(r.ResourceNames, res.Name)
		}
		if r.Namespace == "" {
			r.Namespace = res.Namespace
		}
	}
	switch ev.Provider {
	case events.Provider_PROVIDER_AWS:
		if strings.Contains(r.Identity, ":user/") {
			r.UserName = ev.GetIdentity().GetName()
		}
	case events.Provider_PROVIDER_K8S:
		g := ev.GetAction().GetService()
		switch g {
		case "core":
			g = ""
		case "":
			g = unknownAPIGroup
		}
		r.APIGroup = g
	}
	return r
}

// Entry is one granted permission pattern of one principal, the unit usage is measured in:
// an AWS statement's action pattern, a permission of a GCP role, a verb and resource of a
// Kubernetes rule.
type Entry struct {
	Identity string `json:"identity"`
	Provider string `json:"provider"`
	// Permission is the pattern as granted: "s3:Get*", "NotAction(iam:*)",
	// "storage.objects.get", "get pods".
	Permission string `json:"permission"`
	// Grant is the policy, role or (Cluster)Role.
	Grant string `json:"grant"`
	// Via says how the identity holds it: "direct", "group:<name>", "binding:<name>".
	Via string `json:"via"`
	// Scope is where it applies: AWS resource patterns, a GCP resource, a namespace.
	Scope       string `json:"scope"`
	Deny        bool   `json:"deny,omitempty"`
	Conditional bool   `json:"conditional,omitempty"`
	// Admin marks an admin-equivalent entry: it lets the holder grant itself anything.
	Admin bool `json:"admin,omitempty"`
	// Unresolved marks a grant whose definition is unknown: it matches nothing.
	Unresolved bool `json:"unresolved,omitempty"`
	// Since is when the grant came into force, when an event showed it (an attach, a new
	// binding, joining a group); zero when a snapshot shows it, in force since before.
	Since time.Time `json:"since,omitzero"`

	prov events.Provider
	stmt *Statement // AWS: the statement; Actions narrowed to the one pattern
	def  *Definition
	rule *Rule // K8s: the rule; verb and resource narrowed
	verb string
	res  string
	url  string
}

// Key identifies an entry within its identity.
func (e *Entry) Key() string {
	k := e.Grant + "\x00" + e.Via + "\x00" + e.Permission + "\x00" + e.Scope + "\x00" + effect(e.Deny)
	if e.url != "" {
		k += "\x00url" // "get *" of nonResourceURLs is not "get *" of resources
	}
	return k
}

func effect(deny bool) string {
	if deny {
		return "deny"
	}
	return "allow"
}
