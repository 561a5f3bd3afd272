package netclass

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		ip      string
		ok      bool
		prefix  string
		private bool
	}{
		{"203.0.113.77", true, "203.0.113.0/24", false},
		{"10.1.2.3", true, "10.1.2.0/24", true},
		{"100.64.1.1", true, "100.64.1.0/24", true},
		{"2001:db8:abcd:12::1", true, "2001:db8:abcd::/48", false},
		{"::ffff:192.0.2.1", true, "192.0.2.0/24", false},
		{"075.050.255.67", false, "", false}, // anonymised with leading zeros
		{"", false, "", false},
		{"AWS Internal", false, "", false},
	}
	for _, tt := range tests {
		n, ok := Parse(tt.ip)
		if ok != tt.ok || ok && (n.Prefix.String() != tt.prefix || n.Private != tt.private) {
			t.Errorf("Parse(%q) = %v %v %v", tt.ip, n.Prefix, n.Private, ok)
		}
	}
	a, _ := Parse("203.0.113.1")
	b, _ := Parse("203.0.113.200")
	c, _ := Parse("203.0.114.1")
	if a.PrefixKey() != b.PrefixKey() || a.PrefixKey() == c.PrefixKey() {
		t.Error("prefix keys do not follow /24 networks")
	}
}

func TestFamily(t *testing.T) {
	tests := []struct{ ua, family, class string }{
		{"aws-sdk-go/1.44.0 (go1.21; linux; amd64)", "aws-sdk-go", AgentSDK},
		{"Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux", "boto3", AgentSDK},
		{"[aws-cli/2.15.0 Python/3.11]", "aws-cli", AgentSDK},
		{"APN/1.0 HashiCorp/1.0 Terraform/1.6.0 (+https://www.terraform.io) terraform-provider-aws/5.0", "apn", AgentSDK},
		{"stratus-red-team_c763d13b-d099-488a-bb3e-f57cb2fed240", "stratus-red-team", AgentOther},
		{"curl/8.4.0", "curl", AgentOther},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0", "mozilla", AgentBrowser},
		{"console.amazonaws.com", "console.amazonaws.com", AgentService},
		{"AWS Internal", "aws", AgentService},
		{"kubectl/v1.29.0 (linux/amd64) kubernetes/abc", "kubectl", AgentSDK},
		{"", "", AgentNone},
	}
	for _, tt := range tests {
		f, c := Family(tt.ua)
		if f != tt.family || c != tt.class {
			t.Errorf("Family(%q) = %q %q, want %q %q", tt.ua, f, c, tt.family, tt.class)
		}
	}
}

func TestAWSRanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ip-ranges.json")
	doc := `{"syncToken":"1","createDate":"2024-01-01-00-00-00","prefixes":[{"ip_prefix":"18.236.0.0/15","region":"us-west-2","service":"EC2"},{"ip_prefix":"3.5.140.0/22","region":"ap-northeast-2","service":"S3"}],"ipv6_prefixes":[{"ipv6_prefix":"2600:1f14::/35","region":"us-west-2","service":"EC2"}]}`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadAWSRanges(path)
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"18.236.253.47": true, "18.238.0.1": false, "3.5.141.9": true, "2600:1f14::1": true, "192.0.2.1": false} {
		if got := r.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Contains(%s) = %v", ip, got)
		}
	}
	if err := os.WriteFile(path, []byte(`{"prefixes":[{"ip_prefix":"bad"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAWSRanges(path); err == nil {
		t.Error("a bad prefix must be refused")
	}
}
