// Package awsconf builds the AWS SDK configuration of one source or account: region,
// credentials (the default chain, a shared-config profile, static keys read from a file, or
// a role to assume) and an optional endpoint (a VPC endpoint, a local test server).
package awsconf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Config selects the region, credentials and endpoint of AWS clients. With no credentials
// set, the SDK's default chain applies (environment, shared files, web identity, ECS/EC2
// instance roles).
type Config struct {
	Region string `yaml:"region"`
	// Endpoint overrides the service endpoint (e.g. a VPC endpoint or a local test server).
	Endpoint string `yaml:"endpoint"`
	// Profile is a named profile of the shared config and credentials files.
	Profile string `yaml:"profile"`
	// AccessKeyID and SecretAccessKeyFile give static credentials; the secret is read from
	// a file so it never sits in the configuration.
	AccessKeyID         string `yaml:"access_key_id"`
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	// RoleARN is a role to assume with the credentials above (e.g. a read-only role in
	// the log-archive account); ExternalID is passed when the role's trust policy wants one.
	RoleARN    string `yaml:"role_arn"`
	ExternalID string `yaml:"external_id"`
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Region == "" {
		return errors.New("region is required")
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKeyFile == "") {
		return errors.New("access_key_id and secret_access_key_file go together")
	}
	if c.AccessKeyID != "" && c.Profile != "" {
		return errors.New("set either profile or access_key_id, not both")
	}
	if c.ExternalID != "" && c.RoleARN == "" {
		return errors.New("external_id needs role_arn")
	}
	return nil
}

// Load returns the SDK configuration. Retries are left to the caller (the SDK's retryer is
// disabled), so every source applies its own back-off and counts its errors.
func (c Config) Load(ctx context.Context) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(c.Region),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if c.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(c.Endpoint))
	}
	if c.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	}
	if c.AccessKeyID != "" {
		secret, err := os.ReadFile(c.SecretAccessKeyFile)
		if err != nil {
			return aws.Config{}, fmt.Errorf("read secret_access_key_file: %w", err)
		}
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, strings.TrimSpace(string(secret)), "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws config: %w", err)
	}
	if c.RoleARN != "" {
		stsClient := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = nil })
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "nhiwatch-ingest"
			if c.ExternalID != "" {
				o.ExternalID = aws.String(c.ExternalID)
			}
		}))
	}
	return cfg, nil
}
