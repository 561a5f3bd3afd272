package netclass

import "strings"

// Agent classes: what kind of client a user agent is.
const (
	// AgentSDK is a cloud SDK, CLI or infrastructure tool acting for a program.
	AgentSDK = "sdk"
	// AgentConsole is a provider's web console acting for a person.
	AgentConsole = "console"
	// AgentBrowser is a web browser.
	AgentBrowser = "browser"
	// AgentService is the provider itself (an AWS service principal, a control-plane component).
	AgentService = "service"
	// AgentOther is any other client: scripts, attack tools, custom programs.
	AgentOther = "other"
	// AgentNone is an empty user agent.
	AgentNone = "none"
)

// sdkMarkers are substrings of the user agents of SDKs, CLIs, infrastructure tools and
// Kubernetes clients that workloads normally use.
var sdkMarkers = []string{
	"aws-sdk-", "aws-cli", "boto3", "botocore", "aws-chalice", "aws-internal", "awslambda",
	"terraform", "pulumi", "cloudformation", "cdk", "apn/1.0", "aws_systems_manager", "amazon-ssm-agent",
	"google-api-go-client", "google-cloud-sdk", "gcloud", "gl-go/", "gl-python/", "grpc-go", "grpc-java",
	"google-api-python-client", "gcloud-golang", "cloud-sdk", "gcp-",
	"kubectl", "client-go", "kube-", "kubelet", "helm", "argocd", "flux", "karpenter",
	"eksctl", "okhttp", "java-sdk", "python-requests",
}

// Family returns the family of a user agent: its first product token, lower-cased, without
// version or build suffix ("aws-sdk-go/1.44 (go1.19)" → "aws-sdk-go",
// "stratus-red-team_c763…" → "stratus-red-team"), and its class.
func Family(ua string) (family, class string) {
	s := strings.TrimSpace(ua)
	if s == "" {
		return "", AgentNone
	}
	s = strings.TrimLeft(s, "[")
	lower := strings.ToLower(s)
	end := strings.IndexAny(lower, "/ (;_[]")
	if end < 0 {
		end = len(lower)
	}
	family = lower[:end]
	switch {
	case strings.HasSuffix(family, ".amazonaws.com") || lower == "aws internal" || strings.HasPrefix(lower, "aws internal"):
		return family, AgentService
	case strings.Contains(lower, "console.amazonaws.com") || strings.Contains(lower, "console.cloud.google.com") ||
		strings.HasPrefix(family, "s3console") || strings.Contains(lower, "signin.amazonaws.com"):
		return family, AgentConsole
	}
	for _, m := range sdkMarkers {
		if strings.Contains(lower, m) {
			return family, AgentSDK
		}
	}
	if strings.HasPrefix(family, "mozilla") || strings.Contains(lower, "applewebkit") || strings.Contains(lower, "chrome/") {
		return family, AgentBrowser
	}
	return family, AgentOther
}

// Hash32 is a stable 32-bit FNV-1a hash for compact per-identity sets of strings (regions,
// user agent families, clusters). It does not allocate.
func Hash32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// Hash64 is a stable 64-bit FNV-1a hash (identity and credential keys). It does not allocate.
func Hash64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
