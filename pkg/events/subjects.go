package events

import (
	"strconv"
	"strings"
)

// Stream names.
const (
	StreamRaw      = "NHI_RAW"
	StreamEvents   = "NHI_EVENTS"
	StreamFindings = "NHI_FINDINGS"
	StreamDLQ      = "NHI_DLQ"
)

// Subject wildcards each stream captures.
const (
	SubjectsRaw      = "nhi.raw.>"
	SubjectsEvents   = "nhi.events.>"
	SubjectsFindings = "nhi.findings.>"
	SubjectsDLQ      = "nhi.dlq.>"
)

// KV bucket names.
const (
	// BucketCursors holds each ingest source's durable cursor.
	BucketCursors = "NHI_CURSORS"
	// BucketDetectState holds detector state per identity and credential.
	BucketDetectState = "NHI_DETECT_STATE"
	// BucketLeases holds which detect worker owns which partition.
	BucketLeases = "NHI_LEASES"
	// BucketAlerts is notify's alert ledger: at most one alert per finding id.
	BucketAlerts = "NHI_ALERTS"
	// BucketFindingStatus holds the triage status of findings.
	BucketFindingStatus = "NHI_FINDING_STATUS"
	// BucketGrants is the object store of imported inventory snapshots (grants), one object
	// per snapshot scope.
	BucketGrants = "NHI_GRANTS"
	// BucketPosture holds the posture state of detect: the posture findings open (so that a
	// re-evaluation does not publish them again) and the activity summary they are
	// evaluated from.
	BucketPosture = "NHI_POSTURE"
)

// Stages name the service a dead-lettered message failed in.
const (
	StageIngest    = "ingest"
	StageNormalize = "normalize"
	StageDetect    = "detect"
	StageStore     = "store"
	StageNotify    = "notify"
)

// RawSubject is the NHI_RAW subject for a provider's records:
// nhi.raw.aws.cloudtrail, nhi.raw.gcp.audit, nhi.raw.k8s.audit.
func RawSubject(p Provider) string {
	switch p {
	case Provider_PROVIDER_AWS:
		return "nhi.raw.aws.cloudtrail"
	case Provider_PROVIDER_GCP:
		return "nhi.raw.gcp.audit"
	case Provider_PROVIDER_K8S:
		return "nhi.raw.k8s.audit"
	}
	return "nhi.raw.unknown.unknown"
}

// EventSubject is the NHI_EVENTS subject of a provider's events in one partition:
// nhi.events.<provider>.<partition>.
func EventSubject(p Provider, partition uint32) string {
	return "nhi.events." + subjectToken(p.Label()) + "." + strconv.FormatUint(uint64(partition), 10)
}

// EventPartitionFilter is the NHI_EVENTS filter that selects one partition of every provider.
func EventPartitionFilter(partition uint32) string {
	return "nhi.events.*." + strconv.FormatUint(uint64(partition), 10)
}

// FindingSubject is the NHI_FINDINGS subject of a finding: nhi.findings.<severity>.<detector>.
func FindingSubject(sev Severity, detector string) string {
	return "nhi.findings." + subjectToken(sev.Label()) + "." + subjectToken(detector)
}

// DLQSubject is the NHI_DLQ subject of a stage: nhi.dlq.<stage>.
func DLQSubject(stage string) string { return "nhi.dlq." + subjectToken(stage) }

// subjectToken makes s safe as one subject token: no dots, wildcards or white space.
func subjectToken(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}
