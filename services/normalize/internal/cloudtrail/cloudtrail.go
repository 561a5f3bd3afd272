// Package cloudtrail turns one AWS CloudTrail record into an events.Event: who (identity,
// credential, delegation), did what (action and the IAM permission exercised), to what, from
// where, with what outcome.
package cloudtrail

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// Parse normalizes a parsed CloudTrail record. v is the record itself (envelopes such as
// LookupEvents or EventBridge are unwrapped by the caller).
func Parse(v *fastjson.Value, in record.Input) (*events.Event, error) {
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: cloudtrail record is not an object", record.ErrMalformed)
	}
	version := record.Str(v, "eventVersion")
	if version == "" {
		return nil, fmt.Errorf("%w: cloudtrail eventVersion", record.ErrMissingField)
	}
	if !strings.HasPrefix(version, "1.") {
		return nil, fmt.Errorf("%w: cloudtrail eventVersion %.16q", record.ErrUnsupported, version)
	}
	eventID := record.Str(v, "eventID")
	if eventID == "" {
		return nil, fmt.Errorf("%w: cloudtrail eventID", record.ErrMissingField)
	}
	when, ok := record.Time(v, "eventTime")
	if !ok {
		return nil, fmt.Errorf("%w: cloudtrail eventTime missing or not RFC 3339", record.ErrMalformed)
	}
	source := record.Str(v, "eventSource")
	name := record.Str(v, "eventName")
	if source == "" || name == "" {
		return nil, fmt.Errorf("%w: cloudtrail eventSource or eventName", record.ErrMissingField)
	}
	account := record.Str(v, "recipientAccountId")
	if account == "" {
		account = record.Str(v, "userIdentity", "accountId")
	}
	region := record.Str(v, "awsRegion")
	service := strings.TrimSuffix(source, ".amazonaws.com")

	ev := &events.Event{
		Id:               events.CloudTrailEventID(account, eventID),
		Provider:         events.Provider_PROVIDER_AWS,
		Source:           in.Source,
		TimeUnixNano:     when.UnixNano(),
		ReceivedUnixNano: in.ReceivedAt.UnixNano(),
		ProviderEventId:  eventID,
		Account:          account,
		Action: &events.Action{
			Service:    service,
			Name:       name,
			Permission: Permission(source, name),
			ReadOnly:   record.Bool(v, "readOnly"),
			Type:       record.Str(v, "eventType"),
			Category:   record.Str(v, "eventCategory"),
			Version:    version,
		},
		Network: &events.Network{
			Region:      region,
			UserAgent:   record.Clean(v, "userAgent"),
			VpcEndpoint: record.Str(v, "vpcEndpointId"),
		},
		Outcome: outcome(v),
		Raw:     &events.RawRef{RecordId: in.RecordID, Source: in.Source, Position: in.Position},
	}
	identity(v, ev)
	network(v, ev)
	resources(v, ev)
	return ev, nil
}

// Permission returns the IAM action a CloudTrail event exercised: the service prefix of
// eventSource and the eventName, except where AWS names the permission differently.
func Permission(eventSource, eventName string) string {
	service := strings.TrimSuffix(eventSource, ".amazonaws.com")
	if p, ok := permissionExceptions[service+":"+eventName]; ok {
		return p
	}
	if prefix, ok := servicePrefixes[service]; ok {
		service = prefix
	}
	return service + ":" + eventName
}

// permissionExceptions are events whose IAM permission is not service:eventName.
var permissionExceptions = map[string]string{
	"s3:ListBuckets":             "s3:ListAllMyBuckets",
	"s3:GetBucketPolicyStatus":   "s3:GetBucketPolicyStatus",
	"s3:HeadBucket":              "s3:ListBucket",
	"s3:HeadObject":              "s3:GetObject",
	"s3:ListObjects":             "s3:ListBucket",
	"s3:ListObjectsV2":           "s3:ListBucket",
	"s3:ListObjectVersions":      "s3:ListBucketVersions",
	"s3:CreateMultipartUpload":   "s3:PutObject",
	"s3:UploadPart":              "s3:PutObject",
	"s3:CompleteMultipartUpload": "s3:PutObject",
	"s3:CopyObject":              "s3:PutObject",
	"s3:DeleteObjects":           "s3:DeleteObject",
	"signin:ConsoleLogin":        "signin:ConsoleLogin",
	"sts:GetCallerIdentity":      "sts:GetCallerIdentity",
	"lambda:Invoke":              "lambda:InvokeFunction",
	"monitoring:GetMetricData":   "cloudwatch:GetMetricData",
}

// servicePrefixes map eventSource hosts to IAM service prefixes where they differ.
var servicePrefixes = map[string]string{
	"monitoring":           "cloudwatch",
	"email":                "ses",
	"elasticloadbalancing": "elasticloadbalancing",
	"es":                   "es",
	"ssm-guiconnect":       "ssm-guiconnect",
	"tagging":              "tag",
	"bedrock-runtime":      "bedrock",
}

func outcome(v *fastjson.Value) *events.Outcome {
	code := record.Str(v, "errorCode")
	if code == "" {
		if strings.EqualFold(record.Str(v, "responseElements", "ConsoleLogin"), "Failure") {
			return &events.Outcome{Result: events.Result_RESULT_DENIED, ErrorCode: "ConsoleLoginFailure", ErrorMessage: record.Clean(v, "errorMessage")}
		}
		return &events.Outcome{Result: events.Result_RESULT_ALLOWED}
	}
	res := events.Result_RESULT_FAILED
	lc := strings.ToLower(code)
	if strings.Contains(lc, "accessdenied") || strings.Contains(lc, "unauthorized") || strings.Contains(lc, "forbidden") {
		res = events.Result_RESULT_DENIED
	}
	return &events.Outcome{Result: res, ErrorCode: code, ErrorMessage: record.Clean(v, "errorMessage")}
}

// identity fills the identity, credential and delegation chain from userIdentity.
func identity(v *fastjson.Value, ev *events.Event) {
	u := v.Get("userIdentity")
	id := &events.Identity{}
	ev.Identity = id
	if u == nil || u.Type() != fastjson.TypeObject {
		id.Id = "aws:unknown"
		return
	}
	typ := record.Str(u, "type")
	arn := record.Str(u, "arn")
	account := record.Str(u, "accountId")
	id.Type = typ
	id.Account = account
	id.PrincipalId = record.Str(u, "principalId")
	id.SourceIdentity = record.Str(u, "sessionContext", "sourceIdentity")
	keyID := record.Str(u, "accessKeyId")
	switch typ {
	case "IAMUser":
		id.Id = events.AWSIdentityID(arn)
		id.Name = record.Str(u, "userName")
		id.Kind = events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER
	case "AssumedRole":
		issuer := record.Str(u, "sessionContext", "sessionIssuer", "arn")
		roleARN := issuer
		if roleARN == "" {
			roleARN = RoleARNFromSession(arn)
		}
		id.Id = events.AWSIdentityID(roleARN)
		id.Name = record.Str(u, "sessionContext", "sessionIssuer", "userName")
		if id.Name == "" {
			id.Name = roleARN[strings.LastIndexByte(roleARN, '/')+1:]
		}
		id.SessionName = arn[strings.LastIndexByte(arn, '/')+1:]
		id.Kind = events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
		if strings.Contains(roleARN, ":role/aws-reserved/sso.amazonaws.com/") || strings.HasPrefix(id.Name, "AWSReservedSSO_") {
			id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
		}
		ev.Delegation = append(ev.Delegation, &events.Delegation{From: id.Id, To: arn, Kind: events.DelegationKind_DELEGATION_KIND_ASSUME_ROLE})
	case "Root":
		id.Id = events.AWSIdentityID(arnOr(arn, "arn:aws:iam::"+account+":root"))
		id.Name = "root"
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
	case "AWSService":
		svc := record.Str(u, "invokedBy")
		id.Id = "aws:service:" + svc
		id.Name = svc
		id.Kind = events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
	case "AWSAccount":
		id.Id = "aws:account:" + account
		id.Name = account
		id.Kind = events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
	case "FederatedUser":
		id.Id = events.AWSIdentityID(arn)
		id.Name = arn[strings.LastIndexByte(arn, '/')+1:]
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
		ev.Delegation = append(ev.Delegation, &events.Delegation{
			From: events.AWSIdentityID(record.Str(u, "sessionContext", "sessionIssuer", "arn")),
			To:   arn, Kind: events.DelegationKind_DELEGATION_KIND_FEDERATION,
		})
	case "WebIdentityUser":
		provider := record.Str(u, "identityProvider")
		user := record.Str(u, "userName")
		id.Id = "aws:web-identity:" + provider + ":" + user
		id.Name = user
		id.Kind = events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
	case "IdentityCenterUser":
		id.Id = "aws:identity-center:" + record.Str(u, "onBehalfOf", "userId")
		id.Name = record.Str(u, "onBehalfOf", "userId")
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
	default:
		switch {
		case arn != "":
			id.Id = events.AWSIdentityID(arn)
		case id.PrincipalId != "":
			id.Id = "aws:principal:" + id.PrincipalId
		default:
			id.Id = "aws:unknown"
		}
		id.Name = record.Str(u, "userName")
	}
	if keyID != "" {
		c := &events.Credential{}
		switch {
		case strings.HasPrefix(keyID, "AKIA"):
			c.Id = events.AWSAccessKeyID(keyID)
			c.Type = events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY
		default:
			c.Id = events.AWSSessionCredentialID(keyID)
			c.Type = events.CredentialType_CREDENTIAL_TYPE_SESSION
		}
		if t, ok := record.Time(u, "sessionContext", "attributes", "creationDate"); ok {
			c.IssuedUnixNano = t.UnixNano()
		}
		c.Mfa = record.Str(u, "sessionContext", "attributes", "mfaAuthenticated") == "true"
		if inst := record.Str(u, "sessionContext", "ec2RoleDelivery"); inst != "" {
			c.Delivery = "ec2_role_delivery"
			c.IssuedTo = id.SessionName
		}
		ev.Credential = c
	}
}

// RoleARNFromSession maps arn:aws:sts::A:assumed-role/R/S to arn:aws:iam::A:role/R.
func RoleARNFromSession(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || !strings.HasPrefix(parts[5], "assumed-role/") {
		return arn
	}
	rest := strings.TrimPrefix(parts[5], "assumed-role/")
	role := rest
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		role = rest[:i]
	}
	return "arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + role
}

func arnOr(arn, fallback string) string {
	if arn != "" {
		return arn
	}
	return fallback
}

// network fills the caller address, or the AWS service that made the call.
func network(v *fastjson.Value, ev *events.Event) {
	ip := record.Str(v, "sourceIPAddress")
	if strings.HasSuffix(ip, ".amazonaws.com") || ip == "AWS Internal" {
		ev.Network.Host = ip
		ev.Network.CloudInternal = true
	} else {
		ev.Network.Ip = ip
	}
	if by := record.Str(v, "userIdentity", "invokedBy"); by != "" {
		ev.Network.Host = by
		ev.Network.CloudInternal = ev.Network.CloudInternal || strings.HasSuffix(by, ".amazonaws.com") || by == "AWS Internal"
		ev.Delegation = append(ev.Delegation, &events.Delegation{From: ev.Identity.Id, To: by, Kind: events.DelegationKind_DELEGATION_KIND_SERVICE})
	}
}

// resources lists the resources CloudTrail names in the record.
func resources(v *fastjson.Value, ev *events.Event) {
	for _, r := range v.GetArray("resources") {
		id := record.Str(r, "ARN")
		if id == "" {
			continue
		}
		ev.Resources = append(ev.Resources, &events.Resource{
			Id:      record.Clean(r, "ARN"),
			Type:    record.Str(r, "type"),
			Account: record.Str(r, "accountId"),
		})
	}
}
