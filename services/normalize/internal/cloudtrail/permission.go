package cloudtrail

import "strings"

// Permission returns the IAM action a CloudTrail event exercised: the IAM service prefix of
// eventSource and the eventName, except where AWS names the permission differently.
//
// The exceptions come from the AWS Service Authorization Reference and the S3 API reference
// ("to use this operation you must have permission to perform the s3:… action"), cross-checked
// with the CloudTrail-to-IAM mapping of flosell/trailscraper (cloudtrail.py) and the SDK-to-IAM
// map of iann0036/iam-dataset.
func Permission(eventSource, eventName string) string {
	service := strings.TrimSuffix(eventSource, ".amazonaws.com")
	if p, ok := permissionExceptions[service+":"+eventName]; ok {
		return p
	}
	if prefix, ok := servicePrefixes[service]; ok {
		service = prefix
	} else if i := strings.IndexByte(service, '.'); i >= 0 {
		// Unknown dotted hosts (runtime.x, data.x): the IAM prefix is the last label.
		service = service[strings.LastIndexByte(service, '.')+1:]
	}
	name := stripAPIVersion(eventName)
	if service == "apigateway" {
		return "apigateway:" + apiGatewayMethod(name)
	}
	return service + ":" + name
}

// stripAPIVersion removes the API version Lambda and CloudFront append to event names:
// UpdateFunctionCode20150331v2 → UpdateFunctionCode, CreateDistribution2020_05_31 →
// CreateDistribution.
func stripAPIVersion(name string) string {
	end := len(name)
	// Optional vN.
	i := end
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	if i < end && i > 0 && name[i-1] == 'v' {
		end = i - 1
	}
	// Eight digits, possibly as YYYY_MM_DD.
	j, digits := end, 0
	for j > 0 && (name[j-1] >= '0' && name[j-1] <= '9' || name[j-1] == '_') {
		if name[j-1] != '_' {
			digits++
		}
		j--
	}
	if digits == 8 && j > 0 && end-j >= 8 {
		return name[:j]
	}
	return name
}

// apiGatewayMethod maps an API Gateway management event to the HTTP-verb permission API
// Gateway's IAM model uses (apigateway:GET, POST, PUT, PATCH, DELETE).
func apiGatewayMethod(name string) string {
	switch {
	case strings.HasPrefix(name, "Get"):
		return "GET"
	case strings.HasPrefix(name, "Create"), strings.HasPrefix(name, "Generate"), strings.HasPrefix(name, "Flush"):
		return "POST"
	case strings.HasPrefix(name, "Update"):
		return "PATCH"
	case strings.HasPrefix(name, "Delete"):
		return "DELETE"
	case strings.HasPrefix(name, "Put"), strings.HasPrefix(name, "Import"), strings.HasPrefix(name, "Tag"), strings.HasPrefix(name, "Untag"):
		return "PUT"
	}
	return name
}

// servicePrefixes map eventSource hosts to IAM service prefixes where they differ.
var servicePrefixes = map[string]string{
	"monitoring":              "cloudwatch",
	"email":                   "ses",
	"tagging":                 "tag",
	"appstream2":              "appstream",
	"models.lex":              "lex",
	"runtime.lex":             "lex",
	"runtime-v2-lex":          "lex",
	"mturk-requester":         "mechanicalturk",
	"streams.dynamodb":        "dynamodb",
	"runtime.sagemaker":       "sagemaker",
	"api.sagemaker":           "sagemaker",
	"bedrock-runtime":         "bedrock",
	"bedrock-agent-runtime":   "bedrock",
	"data.iot":                "iot",
	"iotdata":                 "iot",
	"api.ecr":                 "ecr",
	"api.ecr-public":          "ecr-public",
	"ecr-public":              "ecr-public",
	"elasticmapreduce":        "elasticmapreduce",
	"s3-outposts":             "s3-outposts",
	"execute-api":             "execute-api",
	"sso-directory":           "sso-directory",
	"identitystore":           "identitystore",
	"oidc":                    "sso-oauth",
	"portal.sso":              "sso",
	"billingconsole":          "aws-portal",
	"cloudtrail-data":         "cloudtrail-data",
	"ssm-guiconnect":          "ssm-guiconnect",
	"ec2-instance-connect":    "ec2-instance-connect",
	"rolesanywhere":           "rolesanywhere",
	"signin":                  "signin",
	"logs":                    "logs",
	"elasticloadbalancing":    "elasticloadbalancing",
	"application-autoscaling": "application-autoscaling",
}

// permissionExceptions are events whose IAM permission is not service:eventName.
var permissionExceptions = map[string]string{
	// S3 (eventSource s3.amazonaws.com), from the S3 API reference.
	"s3:ListBuckets":                              "s3:ListAllMyBuckets",
	"s3:HeadBucket":                               "s3:ListBucket",
	"s3:HeadObject":                               "s3:GetObject",
	"s3:SelectObjectContent":                      "s3:GetObject",
	"s3:GetObjectAttributes":                      "s3:GetObjectAttributes",
	"s3:ListObjects":                              "s3:ListBucket",
	"s3:ListObjectsV2":                            "s3:ListBucket",
	"s3:ListObjectVersions":                       "s3:ListBucketVersions",
	"s3:ListMultipartUploads":                     "s3:ListBucketMultipartUploads",
	"s3:ListParts":                                "s3:ListMultipartUploadParts",
	"s3:CreateMultipartUpload":                    "s3:PutObject",
	"s3:UploadPart":                               "s3:PutObject",
	"s3:UploadPartCopy":                           "s3:PutObject",
	"s3:CompleteMultipartUpload":                  "s3:PutObject",
	"s3:CopyObject":                               "s3:PutObject",
	"s3:DeleteObjects":                            "s3:DeleteObject",
	"s3:GetBucketCors":                            "s3:GetBucketCORS",
	"s3:PutBucketCors":                            "s3:PutBucketCORS",
	"s3:DeleteBucketCors":                         "s3:PutBucketCORS",
	"s3:GetBucketAccelerateConfiguration":         "s3:GetAccelerateConfiguration",
	"s3:PutBucketAccelerateConfiguration":         "s3:PutAccelerateConfiguration",
	"s3:GetBucketAnalyticsConfiguration":          "s3:GetAnalyticsConfiguration",
	"s3:ListBucketAnalyticsConfigurations":        "s3:GetAnalyticsConfiguration",
	"s3:PutBucketAnalyticsConfiguration":          "s3:PutAnalyticsConfiguration",
	"s3:DeleteBucketAnalyticsConfiguration":       "s3:PutAnalyticsConfiguration",
	"s3:GetBucketEncryption":                      "s3:GetEncryptionConfiguration",
	"s3:PutBucketEncryption":                      "s3:PutEncryptionConfiguration",
	"s3:DeleteBucketEncryption":                   "s3:PutEncryptionConfiguration",
	"s3:GetBucketInventoryConfiguration":          "s3:GetInventoryConfiguration",
	"s3:ListBucketInventoryConfigurations":        "s3:GetInventoryConfiguration",
	"s3:PutBucketInventoryConfiguration":          "s3:PutInventoryConfiguration",
	"s3:DeleteBucketInventoryConfiguration":       "s3:PutInventoryConfiguration",
	"s3:GetBucketLifecycle":                       "s3:GetLifecycleConfiguration",
	"s3:GetBucketLifecycleConfiguration":          "s3:GetLifecycleConfiguration",
	"s3:PutBucketLifecycle":                       "s3:PutLifecycleConfiguration",
	"s3:PutBucketLifecycleConfiguration":          "s3:PutLifecycleConfiguration",
	"s3:DeleteBucketLifecycle":                    "s3:PutLifecycleConfiguration",
	"s3:GetBucketMetricsConfiguration":            "s3:GetMetricsConfiguration",
	"s3:ListBucketMetricsConfigurations":          "s3:GetMetricsConfiguration",
	"s3:PutBucketMetricsConfiguration":            "s3:PutMetricsConfiguration",
	"s3:DeleteBucketMetricsConfiguration":         "s3:PutMetricsConfiguration",
	"s3:GetBucketIntelligentTieringConfiguration": "s3:GetIntelligentTieringConfiguration",
	"s3:PutBucketIntelligentTieringConfiguration": "s3:PutIntelligentTieringConfiguration",
	"s3:GetBucketNotificationConfiguration":       "s3:GetBucketNotification",
	"s3:PutBucketNotificationConfiguration":       "s3:PutBucketNotification",
	"s3:GetBucketReplication":                     "s3:GetReplicationConfiguration",
	"s3:PutBucketReplication":                     "s3:PutReplicationConfiguration",
	"s3:DeleteBucketReplication":                  "s3:PutReplicationConfiguration",
	"s3:DeleteBucketTagging":                      "s3:PutBucketTagging",
	"s3:DeleteBucketPublicAccessBlock":            "s3:PutBucketPublicAccessBlock",
	"s3:DeleteBucketOwnershipControls":            "s3:PutBucketOwnershipControls",
	"s3:GetObjectLockConfiguration":               "s3:GetBucketObjectLockConfiguration",
	"s3:PutObjectLockConfiguration":               "s3:PutBucketObjectLockConfiguration",
	"s3:GetPublicAccessBlock":                     "s3:GetAccountPublicAccessBlock",
	"s3:PutPublicAccessBlock":                     "s3:PutAccountPublicAccessBlock",
	"s3:DeletePublicAccessBlock":                  "s3:PutAccountPublicAccessBlock",
	// KMS: ReEncrypt needs ReEncryptFrom on the source key (and ReEncryptTo on the target).
	"kms:ReEncrypt": "kms:ReEncryptFrom",
	// Lambda data events and legacy names.
	"lambda:Invoke":      "lambda:InvokeFunction",
	"lambda:InvokeAsync": "lambda:InvokeFunction",
	// CloudWatch's eventSource is monitoring.
	"monitoring:GetMetricData": "cloudwatch:GetMetricData",
	// IAM Identity Center portal sign-in events.
	"sso:Federate":           "sso:GetRoleCredentials",
	"sso:GetRoleCredentials": "sso:GetRoleCredentials",
	// EC2 Instance Connect and serial console.
	"ec2-instance-connect:SendSerialConsoleSSHPublicKey": "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
	// DynamoDB PartiQL.
	"dynamodb:ExecuteStatement": "dynamodb:PartiQLSelect",
}

// versionedS3 are S3 object operations whose permission changes when the request names an
// object version (requestParameters.versionId).
var versionedS3 = map[string]string{
	"s3:GetObject":           "s3:GetObjectVersion",
	"s3:HeadObject":          "s3:GetObjectVersion",
	"s3:DeleteObject":        "s3:DeleteObjectVersion",
	"s3:GetObjectAcl":        "s3:GetObjectVersionAcl",
	"s3:PutObjectAcl":        "s3:PutObjectVersionAcl",
	"s3:GetObjectTagging":    "s3:GetObjectVersionTagging",
	"s3:PutObjectTagging":    "s3:PutObjectVersionTagging",
	"s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
	"s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
}
