package events

import (
	"fmt"
	"strings"
)

// Label returns the short lower-case name of the provider: "aws", "gcp", "k8s"; "" when unset.
func (x Provider) Label() string { return label(x.String(), "PROVIDER_") }

// Label returns the short name of the kind: "human", "service_account", "workload_role", …
func (x IdentityKind) Label() string { return label(x.String(), "IDENTITY_KIND_") }

// IsNHI reports whether the kind is a non-human identity.
func (x IdentityKind) IsNHI() bool {
	return x != IdentityKind_IDENTITY_KIND_UNSPECIFIED && x != IdentityKind_IDENTITY_KIND_HUMAN
}

// Label returns the short name of the credential type: "access_key", "session", …
func (x CredentialType) Label() string { return label(x.String(), "CREDENTIAL_TYPE_") }

// Label returns the short name of the delegation kind: "assume_role", …
func (x DelegationKind) Label() string { return label(x.String(), "DELEGATION_KIND_") }

// Label returns "allowed", "denied" or "failed".
func (x Result) Label() string { return label(x.String(), "RESULT_") }

// Label returns "add", "remove" or "replace".
func (x GrantOp) Label() string { return label(x.String(), "GRANT_OP_") }

// Label returns "info", "low", "medium", "high" or "critical".
func (x Severity) Label() string { return label(x.String(), "SEVERITY_") }

// Label returns "open", "acknowledged", "resolved" or "suppressed".
func (x FindingStatus) Label() string { return label(x.String(), "FINDING_STATUS_") }

func label(name, prefix string) string {
	s := strings.TrimPrefix(name, prefix)
	if s == "UNSPECIFIED" {
		return ""
	}
	return strings.ToLower(s)
}

// ParseProvider turns "aws", "gcp" or "k8s" into a Provider.
func ParseProvider(s string) (Provider, error) {
	v, ok := Provider_value["PROVIDER_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("unknown provider %q (want aws, gcp or k8s)", s)
	}
	return Provider(v), nil
}

// ParseIdentityKind turns a kind label ("service_account", "ai_agent", …) into an IdentityKind.
func ParseIdentityKind(s string) (IdentityKind, error) {
	v, ok := IdentityKind_value["IDENTITY_KIND_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("unknown identity kind %q", s)
	}
	return IdentityKind(v), nil
}

// ParseSeverity turns "info", "low", "medium", "high" or "critical" into a Severity.
func ParseSeverity(s string) (Severity, error) {
	v, ok := Severity_value["SEVERITY_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("unknown severity %q (want info, low, medium, high or critical)", s)
	}
	return Severity(v), nil
}

// ParseFindingStatus turns "open", "acknowledged", "resolved" or "suppressed" into a status.
func ParseFindingStatus(s string) (FindingStatus, error) {
	v, ok := FindingStatus_value["FINDING_STATUS_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("unknown finding status %q", s)
	}
	return FindingStatus(v), nil
}
