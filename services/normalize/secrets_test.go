package normalize_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// Planted secrets, one of every kind the redaction must catch. Each test record carries them
// in a different kind of field; none may reach the event.
const (
	plantedJWT        = "eyJhbGciOiJSUzI1NiIsImtpZCI6InBsYW50In0.eyJzdWIiOiJwbGFudGVkLXN1YmplY3QifQ.cGxhbnRlZHNpZ25hdHVyZQ"
	plantedPEMBody    = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCplantedPEM"
	plantedPEM        = "-----BEGIN PRIVATE KEY-----\n" + plantedPEMBody + "\n-----END PRIVATE KEY-----\n"
	plantedSession    = "IQoJb3JpZ2luX2VjEPlantedSessionToken0123456789abcdefXYZ"
	plantedSecretKey  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY"
	plantedSlack      = "xoxb-123456789012-1234567890123-PlantedSlackBotToken"
	plantedGitHub     = "ghp_PlantedGitHubToken0123456789abcdefABCD"
	plantedWebhook    = "hooks.slack.com/services/T0000/B0000/PlantedWebhookSecret"
	plantedK8sData    = "cGxhbnRlZC1rOHMtc2VjcmV0LWRhdGE="
	plantedGCPKey     = "cGxhbnRlZC1nY3AtcHJpdmF0ZS1rZXktZGF0YQ=="
	plantedPassword   = "Planted-P4ssw0rd-Value"
	plantedGoogleKey  = "AIzaSyPlantedGoogleApiKey0123456789abcde"
	plantedBasicCreds = "cGxhbnRlZDpiYXNpYy1jcmVkZW50aWFscw=="
)

var allPlanted = []string{
	plantedJWT, "cGxhbnRlZHNpZ25hdHVyZQ", plantedPEMBody, plantedSession, plantedSecretKey, plantedSlack,
	plantedGitHub, "PlantedWebhookSecret", plantedK8sData, plantedGCPKey, plantedPassword, plantedGoogleKey, plantedBasicCreds,
}

// jsonString quotes s as a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func plantedCloudTrail() string {
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","` + plantedGitHub + `"],"Resource":"arn:aws:s3:::b/` + plantedJWT + `"}]}`
	return `{
	"eventVersion": "1.09", "eventID": "11111111-2222-3333-4444-555555555555", "eventTime": "2024-08-01T13:29:57Z",
	"eventSource": "iam.amazonaws.com", "eventName": "PutRolePolicy", "awsRegion": "us-east-1",
	"sourceIPAddress": "203.0.113.7", "recipientAccountId": "123456789012",
	"userAgent": "curl/8 Authorization: Bearer ` + plantedJWT + `",
	"errorMessage": ` + jsonString("failed: "+plantedPEM+" aws_secret_access_key="+plantedSecretKey) + `,
	"userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/app/` + plantedSlack + `",
		"accountId": "123456789012", "accessKeyId": "ASIAPLANTEDEXAMPLE01", "principalId": "AROAEXAMPLE:s",
		"sessionContext": {"sourceIdentity": "` + plantedGitHub + `", "sessionIssuer": {"arn": "arn:aws:iam::123456789012:role/app", "userName": "app"},
			"attributes": {"creationDate": "2024-08-01T13:00:00Z", "mfaAuthenticated": "false"}}},
	"requestParameters": {"roleName": "app", "policyName": "p-` + plantedGoogleKey + `", "policyDocument": ` + jsonString(policy) + `,
		"password": "` + plantedPassword + `", "nested": {"deeper": ["https://` + plantedWebhook + `", {"secretAccessKey": "` + plantedSecretKey + `"}]},
		"url": "https://admin:` + plantedPassword + `@db.example.com/x", "header": "Basic ` + plantedBasicCreds + `"},
	"responseElements": {"credentials": {"accessKeyId": "ASIAISSUEDEXAMPLE001", "sessionToken": "` + plantedSession + `", "secretAccessKey": "` + plantedSecretKey + `"}},
	"additionalEventData": {"note": "token=` + plantedSession + `", "privateKey": "` + plantedGCPKey + `"},
	"resources": [{"ARN": "arn:aws:iam::123456789012:role/` + plantedSlack + `", "type": "AWS::IAM::Role", "accountId": "123456789012"}]
}`
}

func plantedGCP() string {
	return `{
	"insertId": "planted1", "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity", "timestamp": "2024-02-02T09:44:26Z",
	"resource": {"type": "service_account", "labels": {"project_id": "p", "email_id": "sa@p.iam.gserviceaccount.com", "note": "` + plantedGitHub + `"}},
	"protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "iam.googleapis.com",
		"methodName": "google.iam.admin.v1.CreateServiceAccountKey",
		"resourceName": "projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com/` + plantedWebhook + `",
		"authenticationInfo": {"principalEmail": "dev@example.com", "serviceAccountDelegationInfo": [{"firstPartyPrincipal": {"principalEmail": "ci@p.iam.gserviceaccount.com"}}]},
		"authorizationInfo": [{"permission": "iam.serviceAccountKeys.create", "granted": true, "resource": "projects/-/serviceAccounts/` + plantedSlack + `"}],
		"requestMetadata": {"callerIp": "198.51.100.4", "callerSuppliedUserAgent": "gcloud Bearer ` + plantedJWT + `",
			"requestAttributes": {"time": "2024-02-02T09:44:26Z"}},
		"status": {"message": ` + jsonString("ok "+plantedPEM) + `},
		"request": {"name": "projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com", "password": "` + plantedPassword + `", "apiKey": "` + plantedGoogleKey + `"},
		"response": {"name": "projects/p/serviceAccounts/sa@p.iam.gserviceaccount.com/keys/k1", "privateKeyData": "` + plantedGCPKey + `",
			"items": [{"kind": "Secret", "data": {"k": "` + plantedK8sData + `"}}], "aws": "aws_secret_access_key=` + plantedSecretKey + `",
			"session": {"sessionToken": "` + plantedSession + `"}, "auth": "Basic ` + plantedBasicCreds + `"}}
}`
}

func plantedK8sSecret() string {
	return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete",
	"requestURI":"/api/v1/namespaces/ns/secrets?token=` + plantedSession + `","verb":"create",
	"user":{"username":"system:serviceaccount:ns:deployer","groups":["system:serviceaccounts"],
		"extra":{"authentication.kubernetes.io/credential-id":["JTI=0f5e4c1d-0000-4000-8000-000000000001"],"note":["` + plantedGitHub + `"]}},
	"sourceIPs":["10.0.0.8"],"userAgent":"kubectl Bearer ` + plantedJWT + `",
	"objectRef":{"resource":"secrets","namespace":"ns","name":"db","apiVersion":"v1"},
	"responseStatus":{"metadata":{},"code":201,"message":"` + plantedSlack + `"},
	"annotations":{"authorization.k8s.io/decision":"allow","note":"password=` + plantedPassword + `"},
	"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"` + plantedK8sData + `"},"stringData":{"key":` + jsonString(plantedPEM) + `}},
	"responseObject":{"kind":"Secret","data":{"password":"` + plantedK8sData + `"},"metadata":{"annotations":{"k":"` + plantedGoogleKey + `"}}},
	"requestReceivedTimestamp":"2024-01-01T00:00:00.000000Z","stageTimestamp":"2024-01-01T00:00:00.100000Z"}`
}

func plantedK8sToken() string {
	return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a2","stage":"ResponseComplete",
	"requestURI":"/api/v1/namespaces/ns/serviceaccounts/admin/token","verb":"create",
	"user":{"username":"system:serviceaccount:ns:deployer"},"sourceIPs":["10.0.0.8"],
	"objectRef":{"resource":"serviceaccounts","subresource":"token","namespace":"ns","name":"admin","apiVersion":"v1"},
	"responseStatus":{"metadata":{},"code":201},
	"requestObject":{"kind":"TokenRequest","spec":{"audiences":["` + plantedSecretKey + `"]}},
	"responseObject":{"kind":"TokenRequest","status":{"token":"` + plantedJWT + `","expirationTimestamp":"2024-01-01T01:00:00Z"}},
	"stageTimestamp":"2024-01-01T00:00:00.100000Z"}`
}

func plantedK8sRole() string {
	return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a3","stage":"ResponseComplete",
	"requestURI":"/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles","verb":"create",
	"user":{"username":"alice@example.com"},"sourceIPs":["198.51.100.9"],
	"objectRef":{"resource":"roles","namespace":"ns","name":"r","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},
	"responseStatus":{"metadata":{},"code":201},
	"requestObject":{"kind":"Role","metadata":{"name":"r"},"rules":[{"apiGroups":[""],"resources":["pods","` + plantedSlack + `"],"verbs":["get"],"resourceNames":["` + plantedPassword + `"]}]},
	"stageTimestamp":"2024-01-01T00:00:00.100000Z"}`
}

func TestPlantedSecretsNeverSurvive(t *testing.T) {
	ct := plantedCloudTrail()
	lookup := `{"EventId":"x","EventName":"PutRolePolicy","CloudTrailEvent":` + jsonString(ct) + `}`
	bridge := `{"version":"0","id":"e","detail-type":"AWS API Call via CloudTrail","source":"aws.iam","detail":` + ct + `}`
	azure := `{"category":"kube-audit","operationName":"x","properties":{"log":` + jsonString(plantedK8sSecret()) + `}}`
	tests := []struct {
		name, format, data string
		// keep is a value that must survive, so that the test cannot pass on an empty event.
		keep string
	}{
		{"cloudtrail", "auto", ct, "aws:arn:aws:iam::123456789012:role/app"},
		{"cloudtrail lookup-events", "auto", lookup, "aws:arn:aws:iam::123456789012:role/app"},
		{"cloudtrail eventbridge", "auto", bridge, "aws:arn:aws:iam::123456789012:role/app"},
		{"gcp", "auto", plantedGCP(), "gcp:user:dev@example.com"},
		{"gcp payload only", "gcp", mustField(t, plantedGCP(), "protoPayload"), "gcp:user:dev@example.com"},
		{"k8s secret", "auto", plantedK8sSecret(), "k8s:test:system:serviceaccount:ns:deployer"},
		{"k8s token request", "auto", plantedK8sToken(), "k8s:test:system:serviceaccount:ns:admin"},
		{"k8s role", "auto", plantedK8sRole(), "get pods"},
		{"azure kube-audit", "auto", azure, "k8s:test:system:serviceaccount:ns:deployer"},
	}
	n := normalize.NewNormalizer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !json.Valid([]byte(tt.data)) {
				t.Fatal("test record is not valid JSON")
			}
			ev, err := n.Normalize(normalize.Input{Data: []byte(tt.data), Format: tt.format, Cluster: "test", Source: "test"})
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			js, err := normalize.EventJSON(ev)
			if err != nil {
				t.Fatal(err)
			}
			wire, err := events.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(js), tt.keep) {
				t.Errorf("event lost %q:\n%s", tt.keep, js)
			}
			for _, secret := range allPlanted {
				if strings.Contains(string(js), secret) || strings.Contains(string(wire), secret) {
					t.Errorf("planted secret %.24q… survived:\n%s", secret, js)
				}
			}
		})
	}
}

// mustField returns the JSON of one top-level field of doc.
func mustField(t *testing.T, doc, key string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	return string(m[key])
}
