package refs

import "testing"

func TestLinksAndLabels(t *testing.T) {
	tests := []struct{ got, want string }{
		{MITREURL("T1098.001"), "https://attack.mitre.org/techniques/T1098/001/"},
		{MITREURL("t1078"), "https://attack.mitre.org/techniques/T1078/"},
		{OWASPURL("NHI5"), "https://owasp.org/www-project-non-human-identities-top-10/2025/5-overprivileged-nhi/"},
		{OWASPURL("NHI99"), "https://owasp.org/www-project-non-human-identities-top-10/"},
		{Label("NHI7"), "NHI7 Long-Lived Secrets"},
		{Label("T1098.003"), "T1098.003 Account Manipulation: Additional Cloud Roles"},
		{Label("X1"), "X1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
