package s3sqs

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/valyala/fastjson"
)

// ErrUnknownNotification marks an SQS message that is none of the notification formats.
var ErrUnknownNotification = errors.New("not an S3, SNS, EventBridge or CloudTrail notification")

// object is one S3 object a notification announces.
type object struct {
	Bucket, Key string
}

// parseNotification returns the objects an SQS message body announces as created. It reads
// S3 event notifications (ObjectCreated:*; other events are ignored), the same wrapped in an
// SNS envelope, CloudTrail's own SNS notification ({"s3Bucket":…,"s3ObjectKey":[…]}) and
// EventBridge "Object Created" events. An S3 test event announces nothing.
func parseNotification(body []byte) ([]object, error) {
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("%w: body is not JSON", ErrUnknownNotification)
	}
	return fromValue(v, 0)
}

func fromValue(v *fastjson.Value, depth int) ([]object, error) {
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: body is a %s", ErrUnknownNotification, v.Type())
	}
	// SNS envelope: the notification is the Message string.
	if string(v.GetStringBytes("Type")) == "Notification" && v.Exists("Message") {
		if depth > 0 {
			return nil, fmt.Errorf("%w: nested SNS envelopes", ErrUnknownNotification)
		}
		var p fastjson.Parser
		inner, err := p.ParseBytes(v.GetStringBytes("Message"))
		if err != nil {
			return nil, fmt.Errorf("%w: SNS Message is not JSON", ErrUnknownNotification)
		}
		return fromValue(inner, depth+1)
	}
	// S3 test event, sent when notifications are configured.
	if string(v.GetStringBytes("Event")) == "s3:TestEvent" {
		return []object{}, nil
	}
	// S3 event notification.
	if recs := v.Get("Records"); recs != nil && recs.Type() == fastjson.TypeArray {
		out := []object{}
		items, _ := recs.Array()
		for _, r := range items {
			if string(r.GetStringBytes("eventSource")) != "aws:s3" {
				return nil, fmt.Errorf("%w: record from %q", ErrUnknownNotification, r.GetStringBytes("eventSource"))
			}
			if !strings.HasPrefix(string(r.GetStringBytes("eventName")), "ObjectCreated:") {
				continue
			}
			bucket := string(r.GetStringBytes("s3", "bucket", "name"))
			// Keys in S3 event notifications are URL-encoded (spaces as '+').
			key, err := url.QueryUnescape(string(r.GetStringBytes("s3", "object", "key")))
			if bucket == "" || key == "" || err != nil {
				return nil, fmt.Errorf("%w: S3 record without bucket or key", ErrUnknownNotification)
			}
			out = append(out, object{bucket, key})
		}
		return out, nil
	}
	// CloudTrail's SNS notification of a delivered log file.
	if v.Exists("s3Bucket") && v.Exists("s3ObjectKey") {
		bucket := string(v.GetStringBytes("s3Bucket"))
		keys := v.GetArray("s3ObjectKey")
		if bucket == "" || keys == nil {
			return nil, fmt.Errorf("%w: CloudTrail notification without bucket or keys", ErrUnknownNotification)
		}
		out := make([]object, 0, len(keys))
		for _, k := range keys {
			key := string(k.GetStringBytes())
			if key == "" {
				return nil, fmt.Errorf("%w: CloudTrail notification with an empty key", ErrUnknownNotification)
			}
			out = append(out, object{bucket, key})
		}
		return out, nil
	}
	// EventBridge event of S3.
	if string(v.GetStringBytes("source")) == "aws.s3" && v.Exists("detail-type") {
		if string(v.GetStringBytes("detail-type")) != "Object Created" {
			return []object{}, nil
		}
		bucket := string(v.GetStringBytes("detail", "bucket", "name"))
		key := string(v.GetStringBytes("detail", "object", "key"))
		if bucket == "" || key == "" {
			return nil, fmt.Errorf("%w: EventBridge event without bucket or key", ErrUnknownNotification)
		}
		return []object{{bucket, key}}, nil
	}
	return nil, ErrUnknownNotification
}

// trailKey is what a CloudTrail object key says about its content.
type trailKey struct {
	Org, Account, Kind, Region string
}

// parseKey reads the CloudTrail layout of a key:
//
//	[prefix/]AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<file>
//	[prefix/]AWSLogs/<org-id>/<account>/CloudTrail/<region>/…   (organization trails)
//
// Kind is CloudTrail, CloudTrail-Digest or CloudTrail-Insight. ok is false for other layouts.
func parseKey(key string) (trailKey, bool) {
	i := strings.Index(key, "AWSLogs/")
	if i < 0 || (i > 0 && key[i-1] != '/') {
		return trailKey{}, false
	}
	parts := strings.Split(key[i+len("AWSLogs/"):], "/")
	isKind := func(s string) bool { return strings.HasPrefix(s, "CloudTrail") }
	switch {
	case len(parts) >= 3 && isKind(parts[1]):
		return trailKey{Account: parts[0], Kind: parts[1], Region: parts[2]}, true
	case len(parts) >= 4 && isKind(parts[2]):
		return trailKey{Org: parts[0], Account: parts[1], Kind: parts[2], Region: parts[3]}, true
	}
	return trailKey{}, false
}

// isDigest reports whether a key is a CloudTrail digest file (integrity hashes, no events).
func isDigest(key string) bool {
	if k, ok := parseKey(key); ok && k.Kind == "CloudTrail-Digest" {
		return true
	}
	return strings.Contains(key, "_CloudTrail-Digest_")
}
