package redact_test

import (
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events/jsonenc"
	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
)

// Planted secrets: none of these may survive redaction.
const (
	sessionToken = "IQoJb3JpZ2luX2VjEPlantedSessionTokenValue0123456789"
	secretKey    = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	jwt          = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlX3BsYW50ZWQ"
	pemKey       = "-----BEGIN RSA PRIVATE KEY-----\nMIIEplantedkeymaterial\n-----END RSA PRIVATE KEY-----"
	slackToken   = "xoxb-123456789012-planted-bot-token"
	secretData   = "cGxhbnRlZC1rOHMtc2VjcmV0"
	ghToken      = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"
)

var planted = []string{sessionToken, secretKey, jwt, "MIIEplantedkeymaterial", slackToken, secretData, ghToken}

func redactJSON(t *testing.T, in string) string {
	t.Helper()
	v, err := fastjson.Parse(in)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	redact.Value(v, nil)
	return string(jsonenc.Append(nil, v))
}

func TestValueRemovesPlantedSecrets(t *testing.T) {
	tests := []struct {
		name string
		in   string
		keep []string
	}{
		{
			name: "cloudtrail credentials",
			in:   `{"eventName":"AssumeRole","responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLE123","sessionToken":"` + sessionToken + `","expiration":"x"}}}`,
			keep: []string{"ASIAEXAMPLE123", "AssumeRole"},
		},
		{
			name: "secret key field",
			in:   `{"requestParameters":{"aws_secret_access_key":"` + secretKey + `","userName":"bob"}}`,
			keep: []string{"bob"},
		},
		{
			name: "gcp private key",
			in:   `{"protoPayload":{"response":{"privateKeyData":"` + secretData + `","name":"projects/p/serviceAccounts/sa/keys/k1"}}}`,
			keep: []string{"projects/p/serviceAccounts/sa/keys/k1"},
		},
		{
			name: "k8s secret body",
			in:   `{"kind":"Event","verb":"create","objectRef":{"resource":"secrets","namespace":"ns","name":"db"},"requestObject":{"kind":"Secret","data":{"password":"` + secretData + `"}},"responseObject":{"kind":"Secret","data":{"p":"` + secretData + `"}}}`,
			keep: []string{`"resource":"secrets"`, `"name":"db"`},
		},
		{
			name: "k8s token request",
			in:   `{"objectRef":{"resource":"serviceaccounts","subresource":"token","name":"sa"},"responseObject":{"status":{"token":"` + jwt + `"}}}`,
			keep: []string{`"subresource":"token"`},
		},
		{
			name: "secret in a list of another resource",
			in:   `{"objectRef":{"resource":"pods"},"responseObject":{"items":[{"kind":"Secret","data":{"k":"` + secretData + `"}}]}}`,
		},
		{
			name: "strings anywhere",
			in:   `{"userAgent":"curl Authorization: Bearer ` + jwt + `","args":["` + slackToken + `","` + ghToken + `"],"x":{"y":"` + strings.ReplaceAll(pemKey, "\n", `\n`) + `"}}`,
			keep: []string{"curl"},
		},
		{
			name: "url credentials",
			in:   `{"url":"https://admin:` + secretData + `@db.example.com/x"}`,
			keep: []string{"db.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redactJSON(t, tt.in)
			for _, p := range planted {
				if strings.Contains(got, p) {
					t.Errorf("secret %q survived: %s", p, got)
				}
			}
			for _, k := range tt.keep {
				if !strings.Contains(got, k) {
					t.Errorf("metadata %q was lost: %s", k, got)
				}
			}
		})
	}
}

func TestValueLeavesOrdinaryRecordsAlone(t *testing.T) {
	in := `{"eventName":"ListBuckets","userIdentity":{"accessKeyId":"AKIAIOSFODNN7EXAMPLE","type":"IAMUser"},"tokenType":"x","sourceIPAddress":"1.2.3.4"}`
	v := fastjson.MustParse(in)
	if redact.Value(v, nil) {
		t.Errorf("changed an ordinary record: %s", jsonenc.Append(nil, v))
	}
}

func TestDeepNestingIsCut(t *testing.T) {
	in := strings.Repeat(`{"a":`, 250) + `"` + jwt + `"` + strings.Repeat("}", 250)
	got := redactJSON(t, in)
	if strings.Contains(got, jwt) {
		t.Error("secret survived deep nesting")
	}
}

func TestText(t *testing.T) {
	in := `{"sessionToken": "` + sessionToken + `", "broken": ` + "\n" + `"` + jwt
	got := string(redact.Text([]byte(in)))
	for _, p := range []string{sessionToken, jwt} {
		if strings.Contains(got, p) {
			t.Errorf("secret %q survived Text: %s", p, got)
		}
	}
}

func TestIsSecretKey(t *testing.T) {
	for _, k := range []string{"password", "Password", "session_token", "sessionToken", "private-key", "privateKeyData"} {
		if !redact.IsSecretKey(k) {
			t.Errorf("IsSecretKey(%q) = false", k)
		}
	}
	for _, k := range []string{"accessKeyId", "tokenType", "keyName", "userName", "credential"} {
		if redact.IsSecretKey(k) {
			t.Errorf("IsSecretKey(%q) = true", k)
		}
	}
}
