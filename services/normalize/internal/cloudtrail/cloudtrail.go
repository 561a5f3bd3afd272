// Package cloudtrail turns one AWS CloudTrail record into an events.Event: who (identity,
// credential, delegation), did what (action and the IAM permission exercised), to what, from
// where, with what outcome, and which grants it changed.
package cloudtrail

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// Parser normalizes CloudTrail records. It reuses buffers between records and is not safe for
// concurrent use.
type Parser struct {
	doc    fastjson.Parser // policy documents carried as strings inside records
	extras record.Extras
}

// canon lists the keys CloudTrail records carry, for records whose keys were lower-cased.
var canon = record.NewCanon(
	"eventVersion", "eventID", "eventTime", "eventSource", "eventName", "eventType", "eventCategory",
	"awsRegion", "sourceIPAddress", "userAgent", "userIdentity", "recipientAccountId", "requestID",
	"requestParameters", "responseElements", "additionalEventData", "errorCode", "errorMessage",
	"readOnly", "managementEvent", "resources", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId",
	"tlsDetails", "serviceEventDetails", "insightDetails", "sessionCredentialFromConsole", "apiVersion",
	"accountId", "principalId", "accessKeyId", "userName", "invokedBy", "sessionContext", "sessionIssuer",
	"webIdFederationData", "federatedProvider", "attributes", "creationDate", "mfaAuthenticated",
	"sourceIdentity", "ec2RoleDelivery", "identityProvider", "onBehalfOf", "userId", "credentialId",
	"inScopeOf", "credentialsIssuedTo",
)

// Parse normalizes a parsed CloudTrail record. v is the record itself (envelopes such as
// LookupEvents or EventBridge are unwrapped by the caller); Parse may change v.
func (p *Parser) Parse(v *fastjson.Value, in record.Input) (*events.Event, error) {
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: cloudtrail record is a JSON %s, not an object", record.ErrMalformed, v.Type())
	}
	if canon.NeedsFolding(v, "eventSource", "eventName", "eventTime", "eventID", "eventVersion", "userIdentity") {
		canon.Fold(v)
	}
	version, err := optString(v, "eventVersion")
	if err != nil {
		return nil, err
	}
	if version != "" && !strings.HasPrefix(version, "1.") {
		return nil, fmt.Errorf("%w: cloudtrail eventVersion %s (nhiwatch reads 1.x)", record.ErrUnsupported, record.Token(version))
	}
	if u := v.Get("userIdentity"); u != nil && u.Type() != fastjson.TypeObject && u.Type() != fastjson.TypeNull {
		return nil, fmt.Errorf("%w: cloudtrail userIdentity is a JSON %s, not an object", record.ErrMalformed, u.Type())
	}
	timeStr, err := optString(v, "eventTime")
	if err != nil {
		return nil, err
	}
	if timeStr == "" {
		return nil, fmt.Errorf("%w: cloudtrail eventTime", record.ErrMissingField)
	}
	when, ok := record.Time(v, "eventTime")
	if !ok {
		return nil, fmt.Errorf("%w: cloudtrail eventTime is not a timestamp", record.ErrMalformed)
	}
	category, err := optString(v, "eventCategory")
	if err != nil {
		return nil, err
	}
	eventType, err := optString(v, "eventType")
	if err != nil {
		return nil, err
	}
	insight := category == "Insight" || eventType == "AwsCloudTrailInsight"
	var source, name string
	if insight {
		source, name = record.Str(v, "insightDetails", "eventSource"), record.Str(v, "insightDetails", "eventName")
	} else {
		if source, err = optString(v, "eventSource"); err != nil {
			return nil, err
		}
		if name, err = optString(v, "eventName"); err != nil {
			return nil, err
		}
	}
	if source == "" || name == "" {
		return nil, fmt.Errorf("%w: cloudtrail eventSource or eventName", record.ErrMissingField)
	}
	eventID, err := optString(v, "eventID")
	if err != nil {
		return nil, err
	}
	account := record.Str(v, "recipientAccountId")
	if account == "" {
		account = record.Str(v, "userIdentity", "accountId")
	}
	id := events.CloudTrailEventID(account, eventID)
	if eventID == "" {
		// Hand-written records (test fixtures) lack an eventID: name them by their content.
		id = events.ContentEventID(events.Provider_PROVIDER_AWS, in.Data)
	}
	region := record.Str(v, "awsRegion")
	service := strings.TrimSuffix(source, ".amazonaws.com")
	perm := Permission(source, name)
	if vp, ok := versionedS3[perm]; ok && record.Str(v, "requestParameters", "versionId") != "" {
		perm = vp
	}
	ev := &events.Event{
		Id:               id,
		Provider:         events.Provider_PROVIDER_AWS,
		Source:           in.Source,
		TimeUnixNano:     when.UnixNano(),
		ReceivedUnixNano: in.ReceivedNano(),
		ProviderEventId:  eventID,
		Account:          account,
		Action: &events.Action{
			Service:    service,
			Name:       name,
			Permission: perm,
			ReadOnly:   record.Bool(v, "readOnly"),
			Type:       eventType,
			Category:   category,
			Version:    version,
		},
		Network: &events.Network{
			Region:      region,
			UserAgent:   record.Str(v, "userAgent"),
			VpcEndpoint: record.Str(v, "vpcEndpointId"),
		},
		Outcome: outcome(v),
		Raw:     &events.RawRef{RecordId: in.RecordID, Source: in.Source, Position: in.Position},
	}
	if ev.Action.Category == "" && !insight {
		if v.Get("managementEvent") != nil && !record.Bool(v, "managementEvent") {
			ev.Action.Category = "Data"
		} else {
			ev.Action.Category = "Management"
		}
	}
	identity(v, ev)
	network(v, ev)
	sc := scope{partition: partitionOf(record.Str(v, "userIdentity", "arn")), account: account, region: region, caller: ev.Identity.Id}
	delegation(v, ev, sc)
	resources(v, ev, sc)
	p.grants(v, ev, sc)
	ev.Extras = p.buildExtras(v)
	return ev, nil
}

// optString returns the string at key, "" when absent or null, and an error naming the key
// when it holds another type.
func optString(v *fastjson.Value, key string) (string, error) {
	x := v.Get(key)
	if x == nil || x.Type() == fastjson.TypeNull {
		return "", nil
	}
	if x.Type() != fastjson.TypeString {
		return "", fmt.Errorf("%w: cloudtrail %s is a JSON %s, not a string", record.ErrMalformed, key, x.Type())
	}
	b, _ := x.StringBytes()
	return string(b), nil
}

func partitionOf(arn string) string {
	if strings.HasPrefix(arn, "arn:") {
		rest := arn[4:]
		if i := strings.IndexByte(rest, ':'); i > 0 {
			return rest[:i]
		}
	}
	return "aws"
}

// deniedCodes are error codes (lower case, substrings) that mean the caller was refused:
// missing permission, or credentials that did not authenticate.
var deniedCodes = []string{"accessdenied", "unauthorized", "forbidden", "authfailure", "authorizationerror", "invalidclienttokenid", "signaturedoesnotmatch", "expiredtoken", "notauthorized"}

func outcome(v *fastjson.Value) *events.Outcome {
	code := record.Str(v, "errorCode")
	msg := record.Str(v, "errorMessage")
	if code == "" {
		if strings.EqualFold(record.Str(v, "responseElements", "ConsoleLogin"), "Failure") {
			return &events.Outcome{Result: events.Result_RESULT_DENIED, ErrorCode: "ConsoleLoginFailure", ErrorMessage: msg}
		}
		if msg != "" {
			return &events.Outcome{Result: events.Result_RESULT_FAILED, ErrorMessage: msg}
		}
		return &events.Outcome{Result: events.Result_RESULT_ALLOWED}
	}
	res := events.Result_RESULT_FAILED
	lc := strings.ToLower(code)
	for _, d := range deniedCodes {
		if strings.Contains(lc, d) {
			res = events.Result_RESULT_DENIED
			break
		}
	}
	return &events.Outcome{Result: res, ErrorCode: code, ErrorMessage: msg}
}

// network fills the caller address, or the AWS service that made the call.
func network(v *fastjson.Value, ev *events.Event) {
	src := record.Str(v, "sourceIPAddress")
	switch {
	case src == "":
	case looksLikeIP(src):
		ev.Network.Ip = src
	default:
		// A service principal (ec2.amazonaws.com), "AWS Internal", or a host name.
		ev.Network.Host = src
		ev.Network.CloudInternal = strings.HasSuffix(src, ".amazonaws.com") || src == "AWS Internal"
	}
	if ev.Network.VpcEndpoint != "" {
		ev.Network.CloudInternal = true
	}
	if by := record.Str(v, "userIdentity", "invokedBy"); by != "" {
		if ev.Network.Host == "" {
			ev.Network.Host = by
		}
		ev.Network.CloudInternal = ev.Network.CloudInternal || strings.HasSuffix(by, ".amazonaws.com") || by == "AWS Internal"
		if ev.Identity.Type != "AWSService" {
			ev.Delegation = append(ev.Delegation, &events.Delegation{From: ev.Identity.Id, To: "aws:service:" + by, Kind: events.DelegationKind_DELEGATION_KIND_SERVICE})
		}
	}
}

// looksLikeIP reports whether s is an IPv4 or IPv6 address as logged (CloudTrail samples are
// sometimes anonymised into invalid addresses such as 225.178.039.250; they are still
// addresses, not host names).
func looksLikeIP(s string) bool {
	if len(s) > 45 {
		return false
	}
	colon, dot := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c == '.':
			dot = true
		case c == ':':
			colon = true
		case (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'):
			if !colon && !strings.Contains(s, ":") {
				return false
			}
		case c == '%' && colon:
			return true // zone
		default:
			return false
		}
	}
	return colon || dot
}

// delegation records who the caller became: the role an AssumeRole* call assumed, the
// federated user GetFederationToken created.
func delegation(v *fastjson.Value, ev *events.Event, sc scope) {
	if ev.Action.Service != "sts" || ev.Outcome.Result != events.Result_RESULT_ALLOWED {
		return
	}
	switch ev.Action.Name {
	case "AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "AssumeRoot":
		role := record.Str(v, "requestParameters", "roleArn")
		if role == "" {
			role = RoleARNFromSession(record.Str(v, "responseElements", "assumedRoleUser", "arn"))
		}
		if role == "" {
			return
		}
		kind := events.DelegationKind_DELEGATION_KIND_ASSUME_ROLE
		if ev.Action.Name != "AssumeRole" && ev.Action.Name != "AssumeRoot" {
			kind = events.DelegationKind_DELEGATION_KIND_WEB_IDENTITY
		}
		ev.Delegation = append(ev.Delegation, &events.Delegation{From: ev.Identity.Id, To: events.AWSIdentityID(CanonicalARN(role)), Kind: kind})
	case "GetFederationToken":
		if fu := record.Str(v, "responseElements", "federatedUser", "arn"); fu != "" {
			ev.Delegation = append(ev.Delegation, &events.Delegation{From: ev.Identity.Id, To: events.AWSIdentityID(fu), Kind: events.DelegationKind_DELEGATION_KIND_FEDERATION})
		}
	}
}

// buildExtras keeps the provider details worth having next to the event, redacted and bounded.
// responseElements is left out (what the event needs from it, such as created principals,
// keys and sessions, is already in resources, grant changes and delegation); of the temporary
// credentials an STS call returns only the key id is kept, to link the session to the call
// that created it.
func (p *Parser) buildExtras(v *fastjson.Value) []byte {
	x := &p.extras
	x.Reset()
	x.AddString("requestID", record.Str(v, "requestID"))
	x.AddString("sharedEventID", record.Str(v, "sharedEventID"))
	x.AddString("vpcEndpointAccountId", record.Str(v, "vpcEndpointAccountId"))
	if v.Exists("sessionCredentialFromConsole") {
		x.AddString("sessionCredentialFromConsole", record.Scalar(v, "sessionCredentialFromConsole"))
	}
	x.AddString("invokedBy", record.Str(v, "userIdentity", "invokedBy"))
	if k := record.Str(v, "responseElements", "credentials", "accessKeyId"); k != "" {
		x.AddString("issuedCredential", events.AWSSessionCredentialID(k))
	}
	x.Add("tlsDetails", v.Get("tlsDetails"))
	x.Add("additionalEventData", v.Get("additionalEventData"))
	x.Add("serviceEventDetails", v.Get("serviceEventDetails"))
	x.Add("insightDetails", v.Get("insightDetails"))
	x.Add("requestParameters", v.Get("requestParameters"))
	return x.Bytes()
}
