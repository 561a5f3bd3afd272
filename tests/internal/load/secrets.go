package load

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
)

// LookupEventsForm starts the Where of the secrets planted in a LookupEvents page.
const LookupEventsForm = "LookupEvents page (record as a JSON string in CloudTrailEvent): "

// Secret is a secret value planted in a record. None of its needles may appear anywhere
// downstream: not in a stream, a table, a log line or an alert.
type Secret struct {
	// Where names the format and the field it was planted in.
	Where string
	// Needles are the secret as written and its random core, each long enough to be found
	// only where the secret went.
	Needles []string
}

// secretMaker draws random secrets of the shapes real ones have.
type secretMaker struct {
	rng *rand.Rand
	// form prefixes Where: the container form the next records are written in.
	form    string
	secrets []Secret
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (m *secretMaker) token(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[m.rng.IntN(len(alnum))]
	}
	return string(b)
}

func (m *secretMaker) plant(where string, needles ...string) {
	m.secrets = append(m.secrets, Secret{Where: m.form + where, Needles: needles})
}

// jwt is a signed-looking JSON Web Token whose signature is random.
func (m *secretMaker) jwt(where string) string {
	enc := base64.RawURLEncoding
	sig := m.token(43)
	tok := enc.EncodeToString([]byte(`{"alg":"RS256","kid":"`+m.token(8)+`"}`)) + "." +
		enc.EncodeToString([]byte(`{"sub":"system:serviceaccount:prod:deployer","aud":["https://kubernetes.default.svc"],"jti":"`+m.token(16)+`"}`)) + "." + sig
	m.plant(where, tok, sig)
	return tok
}

// pem is a private key in PEM form whose body is random.
func (m *secretMaker) pem(where, kind string) string {
	var lines []string
	for i := 0; i < 4; i++ {
		lines = append(lines, m.token(64))
	}
	key := "-----BEGIN " + kind + "PRIVATE KEY-----\n" + strings.Join(lines, "\n") + "\n-----END " + kind + "PRIVATE KEY-----\n"
	m.plant(where, lines...)
	return key
}

// value is a random secret of n characters planted at where.
func (m *secretMaker) value(where string, n int) string {
	v := m.token(n)
	m.plant(where, v)
	return v
}

// Secrets makes records in every input format with secrets planted where real logs carry
// them, or where a hostile or careless writer can put them: CloudTrail session tokens,
// secret access keys and credentials (as delivered, in LookupEvents pages and EventBridge
// envelopes), Secrets Manager values, passwords in request parameters, credentials in URLs;
// GCP service-account private keys, passwords and bearer tokens; Kubernetes Secret and
// ConfigMap data, token requests and reviews; JWTs, PEM keys and Slack and GitHub tokens in
// user agents, error messages, resource names, policy documents and container environments;
// and records so broken they are dead-lettered as text. It returns the files and the secrets.
func (t *Templates) Secrets(seed int64) ([]File, []Secret, error) {
	spec := DefaultSpec(seed ^ 0x736563726574)
	g := t.generator(spec)
	m := &secretMaker{rng: rand.New(rand.NewPCG(uint64(seed), 0x736563))}

	type plant func(map[string]any)
	records := func(provider string, plants []plant) ([][]byte, error) {
		var out [][]byte
		for _, p := range plants {
			raw, err := g.record(provider)
			if err != nil {
				return nil, err
			}
			rec, err := decode(raw)
			if err != nil {
				return nil, err
			}
			p(rec)
			b, err := json.Marshal(rec)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, nil
	}
	call := func(rec map[string]any, source, name string) {
		rec["eventSource"], rec["eventName"] = source, name
		delete(rec, "errorCode")
		delete(rec, "errorMessage")
	}
	sessionToken := func(where string) string {
		core := m.token(48)
		m.plant(where, core)
		return "IQoJb3JpZ2luX2VjE" + core + m.token(150)
	}
	credentials := func(where string) map[string]any {
		return map[string]any{
			"accessKeyId":     "ASIA" + strings.ToUpper(m.token(16)),
			"secretAccessKey": m.value(where+" secretAccessKey", 40),
			"sessionToken":    sessionToken(where + " sessionToken"),
			"expiration":      "Mar 2, 2026, 9:00:00 AM",
		}
	}

	aws := []plant{
		func(r map[string]any) {
			call(r, "sts.amazonaws.com", "AssumeRole")
			r["responseElements"] = map[string]any{"credentials": credentials("CloudTrail AssumeRole responseElements.credentials")}
		},
		func(r map[string]any) {
			call(r, "sts.amazonaws.com", "GetFederationToken")
			r["responseElements"] = map[string]any{"credentials": credentials("CloudTrail GetFederationToken credentials"), "federatedUser": map[string]any{"arn": "arn:aws:sts::310000000001:federated-user/ci"}}
		},
		func(r map[string]any) {
			call(r, "iam.amazonaws.com", "CreateAccessKey")
			r["responseElements"] = map[string]any{"accessKey": map[string]any{
				"accessKeyId": "AKIA" + strings.ToUpper(m.token(16)), "status": "Active", "userName": "ci",
				"secretAccessKey": m.value("CloudTrail CreateAccessKey secretAccessKey", 40),
			}}
		},
		func(r map[string]any) {
			r["userAgent"] = "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22 md/x-auth#" + m.jwt("CloudTrail userAgent JWT")
		},
		func(r map[string]any) {
			r["errorCode"] = "MalformedCertificate"
			r["errorMessage"] = "Unable to parse certificate " + m.pem("CloudTrail errorMessage PEM", "RSA ")
		},
		func(r map[string]any) {
			call(r, "ssm.amazonaws.com", "GetParameter")
			tok := "xoxb-1234567890-" + m.value("CloudTrail resource name Slack token", 24)
			r["requestParameters"] = map[string]any{"name": "/prod/notify/" + tok, "withDecryption": true}
			r["resources"] = []any{map[string]any{"ARN": "arn:aws:ssm:us-east-1:310000000001:parameter/prod/notify/" + tok, "type": "AWS::SSM::Parameter"}}
		},
		func(r map[string]any) {
			call(r, "iam.amazonaws.com", "PutRolePolicy")
			doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/ci":"ghp_` +
				m.value("CloudTrail policyDocument GitHub token", 36) + `"}}}]}`
			r["requestParameters"] = map[string]any{"roleName": "ci-deployer", "policyName": "inline", "policyDocument": doc}
		},
		func(r map[string]any) {
			call(r, "secretsmanager.amazonaws.com", "GetSecretValue")
			r["responseElements"] = map[string]any{"secretString": `{"db_password":"` + m.value("CloudTrail Secrets Manager secretString", 32) + `"}`}
		},
		func(r map[string]any) {
			call(r, "rds.amazonaws.com", "CreateDBInstance")
			r["requestParameters"] = map[string]any{"dBInstanceIdentifier": "prod", "masterUsername": "admin", "masterUserPassword": m.value("CloudTrail masterUserPassword", 28)}
		},
		func(r map[string]any) {
			call(r, "sns.amazonaws.com", "Subscribe")
			r["requestParameters"] = map[string]any{"protocol": "https", "endpoint": "https://alerts:" + m.value("CloudTrail credentials in a URL", 28) + "@hooks.example.com/sns"}
		},
	}
	awsRecs, err := records(AWS, aws)
	if err != nil {
		return nil, nil, err
	}
	// The same kinds of record as a LookupEvents page (each record a JSON string inside
	// CloudTrailEvent) and as EventBridge envelopes.
	m.form = LookupEventsForm
	lookupRecs, err := records(AWS, aws[:3])
	if err != nil {
		return nil, nil, err
	}
	m.form = "EventBridge envelope: "
	bridgeRecs, err := records(AWS, aws[:3])
	if err != nil {
		return nil, nil, err
	}
	m.form = ""

	gcp := []plant{
		func(r map[string]any) {
			pp := object(r, "protoPayload")
			pp["methodName"], pp["serviceName"] = "google.iam.admin.v1.CreateServiceAccountKey", "iam.googleapis.com"
			keyFile := `{"type":"service_account","private_key_id":"` + m.token(40) + `","private_key":"` +
				strings.ReplaceAll(m.pem("GCP privateKeyData (inside the key file)", ""), "\n", `\n`) + `"}`
			b64 := base64.StdEncoding.EncodeToString([]byte(keyFile))
			m.plant("GCP CreateServiceAccountKey response.privateKeyData", b64[40:100])
			pp["response"] = map[string]any{
				"@type":          "type.googleapis.com/google.iam.admin.v1.ServiceAccountKey",
				"name":           "projects/fault-project/serviceAccounts/deployer@fault-project.iam.gserviceaccount.com/keys/" + strings.ToLower(m.token(40)),
				"privateKeyData": b64, "keyAlgorithm": 2,
			}
		},
		func(r map[string]any) {
			object(object(r, "protoPayload"), "requestMetadata")["callerSuppliedUserAgent"] = "google-api-go-client/0.5 jwt=" + m.jwt("GCP callerSuppliedUserAgent JWT")
		},
		func(r map[string]any) {
			object(r, "protoPayload")["status"] = map[string]any{"code": 16, "message": "Request had invalid authentication credentials: Bearer ya29." + m.value("GCP status.message bearer token", 40)}
		},
		func(r map[string]any) {
			pp := object(r, "protoPayload")
			pp["methodName"], pp["serviceName"] = "cloudsql.users.create", "cloudsql.googleapis.com"
			pp["request"] = map[string]any{"@type": "type.googleapis.com/google.cloud.sql.v1beta4.User", "name": "app", "password": m.value("GCP request.password", 28)}
		},
		func(r map[string]any) {
			pp := object(r, "protoPayload")
			pp["request"] = map[string]any{"labels": map[string]any{"notify": "https://hooks.slack.com/services/T0000FAULT/B0000FAULT/" + m.value("GCP Slack webhook URL in a label", 24)}}
		},
	}
	gcpRecs, err := records(GCP, gcp)
	if err != nil {
		return nil, nil, err
	}

	k8sSecretData := func(where string) map[string]any {
		pw := m.value(where+" (decoded)", 24)
		enc := base64.StdEncoding.EncodeToString([]byte(pw))
		m.plant(where+" (base64)", enc)
		return map[string]any{"password": enc}
	}
	k8s := []plant{
		func(r map[string]any) {
			r["verb"], r["requestURI"] = "create", "/api/v1/namespaces/prod/secrets"
			r["objectRef"] = map[string]any{"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"}
			apiKey := m.value("K8s Secret stringData", 32)
			last := `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db"},"stringData":{"api_key":"` + apiKey + `"}}`
			body := map[string]any{
				"kind": "Secret", "apiVersion": "v1",
				"metadata":   map[string]any{"name": "db", "namespace": "prod", "annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": last}},
				"data":       k8sSecretData("K8s Secret data"),
				"stringData": map[string]any{"api_key": apiKey},
			}
			r["requestObject"], r["responseObject"] = body, body
		},
		func(r map[string]any) {
			r["verb"], r["requestURI"] = "create", "/api/v1/namespaces/prod/serviceaccounts/deployer/token"
			r["objectRef"] = map[string]any{"resource": "serviceaccounts", "subresource": "token", "namespace": "prod", "name": "deployer", "apiVersion": "v1"}
			r["requestObject"] = map[string]any{"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "spec": map[string]any{"audiences": []any{"vault"}}}
			r["responseObject"] = map[string]any{"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
				"status": map[string]any{"token": m.jwt("K8s TokenRequest status.token"), "expirationTimestamp": "2026-03-02T09:00:00Z"}}
		},
		func(r map[string]any) {
			r["verb"], r["requestURI"] = "create", "/apis/authentication.k8s.io/v1/tokenreviews"
			r["objectRef"] = map[string]any{"resource": "tokenreviews", "apiGroup": "authentication.k8s.io", "apiVersion": "v1"}
			r["requestObject"] = map[string]any{"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "spec": map[string]any{"token": m.jwt("K8s TokenReview spec.token")}}
		},
		func(r map[string]any) {
			r["userAgent"] = "kubectl/v1.29.0 (linux/amd64) kubernetes/abc xoxp-1234567890-" + m.value("K8s userAgent Slack token", 24)
		},
		func(r map[string]any) {
			r["responseStatus"] = map[string]any{"code": 422, "status": "Failure", "message": "invalid key " + m.pem("K8s responseStatus.message PEM", "EC ")}
		},
		func(r map[string]any) {
			r["verb"], r["requestURI"] = "update", "/api/v1/namespaces/prod/configmaps/app"
			r["objectRef"] = map[string]any{"resource": "configmaps", "namespace": "prod", "name": "app", "apiVersion": "v1"}
			r["requestObject"] = map[string]any{"kind": "ConfigMap", "apiVersion": "v1", "data": map[string]any{"app.properties": "db.url=jdbc:postgresql://db/app\ndb.pass=" + m.value("K8s ConfigMap data", 28)}}
		},
		func(r map[string]any) {
			r["verb"], r["requestURI"] = "create", "/apis/apps/v1/namespaces/prod/deployments"
			r["objectRef"] = map[string]any{"resource": "deployments", "namespace": "prod", "name": "api", "apiGroup": "apps", "apiVersion": "v1"}
			env := []any{
				map[string]any{"name": "SLACK_TOKEN", "value": "xoxb-1234567890-" + m.value("K8s container env Slack token", 24)},
				map[string]any{"name": "GITHUB_TOKEN", "value": "ghp_" + m.value("K8s container env GitHub token", 36)},
			}
			r["requestObject"] = map[string]any{"kind": "Deployment", "apiVersion": "apps/v1", "spec": map[string]any{"template": map[string]any{"spec": map[string]any{
				"containers": []any{map[string]any{"name": "api", "image": "api:1", "env": env}},
			}}}}
		},
	}
	k8sRecs, err := records(K8s, k8s)
	if err != nil {
		return nil, nil, err
	}

	// Records too broken to parse reach NHI_DLQ as redacted text.
	brokenCT := `{"eventVersion":"1.08","responseElements":{"credentials":{"accessKeyId":"ASIAFAULT","sessionToken":"` +
		sessionToken("a broken CloudTrail line, sessionToken") + `"}},"userAgent":"` + m.jwt("a broken CloudTrail line, JWT") + `"`
	brokenGCP := "{\"protoPayload\":{\"response\":{\"privateKeyData\":\"" + m.value("a GCP line with invalid UTF-8, privateKeyData", 48) + "\"}},\"x\":\"\xff\xfe\"}"

	var files []File
	add := func(dir, name string, data []byte, n int) {
		files = append(files, File{Dir: dir, Name: "secrets-" + name, Data: data, Records: n})
	}
	add(AWS, "records.jsonl", append(lines(awsRecs), []byte(brokenCT+"\n")...), len(awsRecs)+1)
	page, err := lookupPage(lookupRecs)
	if err != nil {
		return nil, nil, err
	}
	add(AWS, "lookup-events.json", page, len(lookupRecs))
	bridge, err := eventBridge(bridgeRecs)
	if err != nil {
		return nil, nil, err
	}
	add(AWS, "eventbridge.jsonl", bridge, len(bridgeRecs))
	delivery, err := gzipped(wrap(`{"Records":[`, awsRecs[:3], `]}`))
	if err != nil {
		return nil, nil, err
	}
	// The same records again in a delivery file: new record ids, the same events.
	add(AWS, "CloudTrail.json.gz", delivery, 3)
	add(GCP, "entries.jsonl", append(lines(gcpRecs), []byte(brokenGCP+"\n")...), len(gcpRecs)+1)
	add(K8s, "audit.log", lines(k8sRecs), len(k8sRecs))
	add(K8s, "eventlist.json", wrap(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`, k8sRecs, `]}`), len(k8sRecs))
	for _, s := range m.secrets {
		for _, n := range s.Needles {
			if len(n) < 16 {
				return nil, nil, fmt.Errorf("load: secret at %s has a needle of %d characters, too short to search for", s.Where, len(n))
			}
		}
	}
	return files, m.secrets, nil
}
