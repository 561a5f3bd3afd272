// Package refs names and links the OWASP Non-Human Identities Top 10 and MITRE ATT&CK
// references a finding carries, so an alert says why it matters in words an analyst knows.
package refs

import "strings"

// owaspNHI are the OWASP Non-Human Identities Top 10 (2025) risks.
var owaspNHI = map[string]string{
	"NHI1":  "Improper Offboarding",
	"NHI2":  "Secret Leakage",
	"NHI3":  "Vulnerable Third-Party NHI",
	"NHI4":  "Insecure Authentication",
	"NHI5":  "Overprivileged NHI",
	"NHI6":  "Insecure Cloud Deployment Configurations",
	"NHI7":  "Long-Lived Secrets",
	"NHI8":  "Environment Isolation",
	"NHI9":  "NHI Reuse",
	"NHI10": "Human Use of NHI",
}

// mitre names the ATT&CK (sub-)techniques the nhiwatch detectors report.
var mitre = map[string]string{
	"T1078":     "Valid Accounts",
	"T1078.001": "Valid Accounts: Default Accounts",
	"T1078.004": "Valid Accounts: Cloud Accounts",
	"T1098":     "Account Manipulation",
	"T1098.001": "Account Manipulation: Additional Cloud Credentials",
	"T1098.003": "Account Manipulation: Additional Cloud Roles",
	"T1098.006": "Account Manipulation: Additional Container Cluster Roles",
	"T1136":     "Create Account",
	"T1136.003": "Create Account: Cloud Account",
	"T1484":     "Domain or Tenant Policy Modification",
	"T1528":     "Steal Application Access Token",
	"T1550":     "Use Alternate Authentication Material",
	"T1550.001": "Use Alternate Authentication Material: Application Access Token",
	"T1552":     "Unsecured Credentials",
	"T1552.005": "Unsecured Credentials: Cloud Instance Metadata API",
	"T1535":     "Unused/Unsupported Cloud Regions",
}

// OWASPName returns the risk's name ("Overprivileged NHI"), or "" when unknown.
func OWASPName(id string) string { return owaspNHI[strings.ToUpper(id)] }

// OWASPURL links the OWASP NHI Top 10 risk.
func OWASPURL(id string) string {
	id = strings.ToUpper(id)
	if _, ok := owaspNHI[id]; !ok {
		return "https://owasp.org/www-project-non-human-identities-top-10/"
	}
	return "https://owasp.org/www-project-non-human-identities-top-10/2025/" + strings.TrimPrefix(id, "NHI") + "-" + slug(owaspNHI[id]) + "/"
}

// MITREName returns the technique's name, or "" when unknown.
func MITREName(id string) string { return mitre[strings.ToUpper(id)] }

// MITREURL links the ATT&CK technique page: T1098.001 → /techniques/T1098/001/.
func MITREURL(id string) string {
	id = strings.ToUpper(id)
	tech, sub, ok := strings.Cut(id, ".")
	if ok {
		return "https://attack.mitre.org/techniques/" + tech + "/" + sub + "/"
	}
	return "https://attack.mitre.org/techniques/" + tech + "/"
}

// Label is "NHI5 Overprivileged NHI" or "T1098.001 Account Manipulation: …", or the id alone.
func Label(id string) string {
	if n := OWASPName(id); n != "" {
		return strings.ToUpper(id) + " " + n
	}
	if n := MITREName(id); n != "" {
		return strings.ToUpper(id) + " " + n
	}
	return id
}

func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
