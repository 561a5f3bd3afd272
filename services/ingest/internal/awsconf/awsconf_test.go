package awsconf

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default chain", Config{Region: "us-east-1"}, true},
		{"no region", Config{}, false},
		{"static", Config{Region: "us-east-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKeyFile: "/s"}, true},
		{"key without secret", Config{Region: "us-east-1", AccessKeyID: "AKIDEXAMPLE"}, false},
		{"key and profile", Config{Region: "us-east-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKeyFile: "/s", Profile: "p"}, false},
		{"external id without role", Config{Region: "us-east-1", ExternalID: "x"}, false},
		{"role", Config{Region: "us-east-1", RoleARN: "arn:aws:iam::111111111111:role/r", ExternalID: "x"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestLoadReadsTheSecretFromItsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(path, []byte("  wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"), 0o600)
	cfg, err := Config{Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKeyFile: path, Endpoint: "http://127.0.0.1:1"}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "AKIDEXAMPLE" || creds.SecretAccessKey != "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" {
		t.Errorf("credentials %q/%q", creds.AccessKeyID, "…")
	}
	if cfg.Region != "eu-west-1" || cfg.BaseEndpoint == nil || *cfg.BaseEndpoint != "http://127.0.0.1:1" {
		t.Errorf("region %q, endpoint %v", cfg.Region, cfg.BaseEndpoint)
	}
	if _, err := (Config{Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKeyFile: path + ".missing"}).Load(context.Background()); err == nil {
		t.Error("a missing secret file loaded")
	}
}
