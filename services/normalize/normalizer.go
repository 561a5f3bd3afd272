package normalize

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/cloudtrail"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/gcp"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/k8s"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// Input is one raw record and what its source said about it.
type Input = record.Input

// Errors Normalize returns, for callers to branch on with errors.Is.
var (
	ErrMalformed    = record.ErrMalformed
	ErrMissingField = record.ErrMissingField
	ErrUnsupported  = record.ErrUnsupported
	// ErrSkipped marks a valid record that deliberately yields no event; it is counted,
	// not dead-lettered.
	ErrSkipped = record.ErrSkipped
	// ErrTooLarge marks a record over the size limit.
	ErrTooLarge = errors.New("record too large")
	// ErrUndetected marks a record whose provider auto-detection cannot tell (it is also
	// ErrUnsupported); a caller that knows the format may retry with it.
	ErrUndetected = fmt.Errorf("%w: cannot tell which provider wrote the record", ErrUnsupported)
)

// FormatOf returns the format name ("cloudtrail", "gcp" or "k8s") of a provider's events.
func FormatOf(p events.Provider) string {
	switch p {
	case events.Provider_PROVIDER_AWS:
		return "cloudtrail"
	case events.Provider_PROVIDER_GCP:
		return "gcp"
	case events.Provider_PROVIDER_K8S:
		return "k8s"
	}
	return ""
}

// MaxRecordBytes bounds one record.
const MaxRecordBytes = 1 << 20

// maxDepth bounds how deeply a record may nest; fastjson itself stops at 300.
const maxDepth = 64

// Normalizer turns raw records into events. It reuses its parsers and is not safe for
// concurrent use: use one per goroutine.
type Normalizer struct {
	outer fastjson.Parser
	inner fastjson.Parser
	ct    cloudtrail.Parser
	k8s   k8s.Parser
	gcp   gcp.Parser
}

// NewNormalizer returns a Normalizer.
func NewNormalizer() *Normalizer { return &Normalizer{} }

// Normalize turns one record into an event, or returns an error that names the problem
// without quoting the record.
func (n *Normalizer) Normalize(in Input) (*events.Event, error) {
	if len(in.Data) > MaxRecordBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrTooLarge, len(in.Data), MaxRecordBytes)
	}
	if !utf8.Valid(in.Data) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrMalformed)
	}
	if d := nesting(in.Data); d > maxDepth {
		return nil, fmt.Errorf("%w: nested %d levels deep, more than %d", ErrMalformed, d, maxDepth)
	}
	v, err := n.outer.ParseBytes(in.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: not valid JSON", ErrMalformed)
	}
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: record is a JSON %s, not an object", ErrMalformed, v.Type())
	}
	if kind := v.GetStringBytes("kind"); string(kind) == "EventList" {
		return nil, fmt.Errorf("%w: a Kubernetes EventList holds many records; split it first (ingest does)", ErrUnsupported)
	}
	format := in.Format
	if format == "" || format == "auto" {
		format = detect(v)
	}
	var ev *events.Event
	switch format {
	case "cloudtrail":
		if v, err = n.unwrapCloudTrail(v); err != nil {
			return nil, err
		}
		ev, err = n.ct.Parse(v, in)
	case "k8s":
		if v, err = n.unwrapK8s(v); err != nil {
			return nil, err
		}
		ev, err = n.k8s.Parse(v, in)
	case "gcp":
		ev, err = n.gcp.Parse(v, in)
	case "":
		return nil, ErrUndetected
	default:
		return nil, fmt.Errorf("%w: unknown format %.32q", ErrUnsupported, format)
	}
	if err != nil {
		return nil, err
	}
	record.RedactEvent(ev)
	return ev, nil
}

// nesting returns the deepest nesting of objects and arrays in data, outside strings.
func nesting(data []byte) int {
	// Fewer opening brackets than the limit cannot nest deeper than it: skip the scan.
	if bytes.Count(data, []byte{'{'})+bytes.Count(data, []byte{'['}) <= maxDepth {
		return 0
	}
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > deepest {
				deepest = depth
			}
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// detect guesses a record's format from the fields each provider always writes.
func detect(v *fastjson.Value) string {
	switch {
	case v.Exists("eventSource") && (v.Exists("eventName") || v.Exists("eventVersion") || v.Exists("userIdentity")),
		v.Exists("eventVersion") && v.Exists("insightDetails"),
		v.Exists("CloudTrailEvent"),
		v.Exists("detail", "eventSource"),
		v.Exists("eventsource") && v.Exists("eventname"):
		return "cloudtrail"
	case v.Exists("protoPayload"), v.Exists("protopayload"), v.Exists("logName") && v.Exists("insertId"),
		string(v.GetStringBytes("@type")) == "type.googleapis.com/google.cloud.audit.AuditLog",
		v.Exists("methodName") && (v.Exists("serviceName") || v.Exists("authenticationInfo")):
		return "gcp"
	case v.Exists("auditID"), v.Exists("verb") && (v.Exists("requestURI") || v.Exists("objectRef") || v.Exists("user")),
		string(v.GetStringBytes("kind")) == "Event" && (v.Exists("stage") || v.Exists("objectRef") || v.Exists("user")),
		v.Exists("properties", "log") && string(v.GetStringBytes("category")) == "kube-audit":
		return "k8s"
	}
	return ""
}

// unwrapCloudTrail returns the CloudTrail record inside a LookupEvents result (a JSON string
// in CloudTrailEvent) or an EventBridge envelope (detail), or v itself.
func (n *Normalizer) unwrapCloudTrail(v *fastjson.Value) (*fastjson.Value, error) {
	if inner := v.Get("CloudTrailEvent"); inner != nil {
		if inner.Type() != fastjson.TypeString {
			return nil, fmt.Errorf("%w: LookupEvents CloudTrailEvent is a JSON %s, not a string", ErrMalformed, inner.Type())
		}
		return n.parseInner(inner, "LookupEvents CloudTrailEvent")
	}
	if d := v.Get("detail"); d != nil && (v.Exists("detail-type") || v.Exists("source")) {
		if d.Type() != fastjson.TypeObject {
			return nil, fmt.Errorf("%w: EventBridge detail is a JSON %s, not an object", ErrMalformed, d.Type())
		}
		return d, nil
	}
	return v, nil
}

// unwrapK8s returns the audit event inside an Azure diagnostic-log record (AKS kube-audit:
// the event is a JSON string in properties.log), or v itself.
func (n *Normalizer) unwrapK8s(v *fastjson.Value) (*fastjson.Value, error) {
	log := v.Get("properties", "log")
	if log == nil || v.Get("verb") != nil || v.Get("auditID") != nil {
		return v, nil
	}
	switch log.Type() {
	case fastjson.TypeObject:
		return log, nil
	case fastjson.TypeString:
		return n.parseInner(log, "Azure kube-audit properties.log")
	}
	return nil, fmt.Errorf("%w: Azure kube-audit properties.log is a JSON %s, not a string", ErrMalformed, log.Type())
}

// parseInner parses a record an envelope carries as a JSON string (what names the field).
func (n *Normalizer) parseInner(v *fastjson.Value, what string) (*fastjson.Value, error) {
	s, _ := v.StringBytes()
	if d := nesting(s); d > maxDepth {
		return nil, fmt.Errorf("%w: %s nested %d levels deep, more than %d", ErrMalformed, what, d, maxDepth)
	}
	iv, err := n.inner.ParseBytes(s)
	if err != nil || iv.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: %s does not hold a JSON object", ErrMalformed, what)
	}
	return iv, nil
}
