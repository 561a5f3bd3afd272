package events

// Header names carried on every nhiwatch message (DESIGN.md "NATS JetStream contracts").
const (
	// HeaderMsgID is JetStream's de-duplication header: a stable id per message.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderSource is the configured source name the records came from.
	HeaderSource = "Nhi-Source"
	// HeaderReceivedAt is when ingest received the records, RFC 3339 with nanoseconds.
	HeaderReceivedAt = "Nhi-Received-At"
	// HeaderTraceParent is the W3C trace context, so one trace follows an event to its alert.
	HeaderTraceParent = "traceparent"
	// HeaderError is why a dead-lettered message failed. It never carries record content.
	HeaderError = "Nhi-Error"
	// HeaderStage is the stage a dead-lettered message failed in.
	HeaderStage = "Nhi-Stage"
	// HeaderSubject is the subject a dead-lettered message was originally published to.
	HeaderSubject = "Nhi-Subject"
	// HeaderRecords is the number of records or events a batch message carries.
	HeaderRecords = "Nhi-Records"
)
