package events

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"strings"
)

// Event ids are deterministic, so that re-reading a record yields the same id and every
// consumer can be idempotent per record. They are built from the provider's own unique keys.

// CloudTrailEventID is the id of a CloudTrail record: eventID is unique within the account
// that received the event (recipientAccountId).
func CloudTrailEventID(recipientAccountID, eventID string) string {
	return "aws:" + recipientAccountID + ":" + eventID
}

// GCPEventID is the id of a Cloud Audit Log entry: insertId is unique within its log.
// Log names are long, so the id is a hash of both.
func GCPEventID(logName, insertID string) string {
	return "gcp:" + shortHash(logName, insertID)
}

// K8sEventID is the id of a Kubernetes audit event: the API server gives every request one
// auditID and logs it once per stage.
func K8sEventID(cluster, auditID, stage string) string {
	return "k8s:" + cluster + ":" + auditID + ":" + stage
}

// ContentEventID is the id of a record that lacks its provider's unique keys: a hash of its
// bytes, so the same record still gets the same id.
func ContentEventID(p Provider, data []byte) string {
	sum := sha256.Sum256(data)
	return p.Label() + ":sha256:" + hex.EncodeToString(sum[:16])
}

// FindingID is the stable id of a finding: the same detector, identity, cause and time
// bucket always give the same id, so a replay or a restarted worker re-creates the same
// findings instead of new ones.
func FindingID(detector, identityID, cause, bucket string) string {
	return shortHash(detector, identityID, cause, bucket)
}

// RecordID is the stable id of a raw record at a source position.
func RecordID(source, position string) string {
	return source + ":" + position
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Canonical identity ids (DESIGN.md "Identities").

// AWSIdentityID is the id of an IAM user or role by its ARN. Callers map a role session
// (arn:aws:sts::…:assumed-role/R/S) to the role's ARN first.
func AWSIdentityID(arn string) string { return "aws:" + arn }

// GCPServiceAccountID is the id of a GCP service account by its email.
func GCPServiceAccountID(email string) string { return "gcp:" + strings.ToLower(email) }

// GCPUserID is the id of a GCP user or other non-service-account principal.
func GCPUserID(email string) string { return "gcp:user:" + strings.ToLower(email) }

// K8sServiceAccountID is the id of a Kubernetes service account.
func K8sServiceAccountID(cluster, namespace, name string) string {
	return "k8s:" + cluster + ":system:serviceaccount:" + namespace + ":" + name
}

// K8sUserID is the id of any other Kubernetes user (nodes, system components, OIDC users).
func K8sUserID(cluster, username string) string { return "k8s:" + cluster + ":user:" + username }

// Credential ids.

// AWSAccessKeyID is the id of a long-term AKIA… access key.
func AWSAccessKeyID(keyID string) string { return "aws:key:" + keyID }

// AWSSessionCredentialID is the id of the temporary ASIA… key of an STS session.
func AWSSessionCredentialID(keyID string) string { return "aws:session:" + keyID }

// GCPKeyID is the id of a service-account key by its full key name.
func GCPKeyID(keyName string) string { return "gcp:key:" + keyName }

// K8sTokenID is the id of a Kubernetes token by its credential id
// (authentication.kubernetes.io/credential-id, e.g. "JTI=…").
func K8sTokenID(cluster, credentialID string) string {
	return "k8s:" + cluster + ":token:" + credentialID
}

// Partition returns the partition of an identity: a stable hash of its id modulo the
// number of partitions. All events of one identity land on one partition, so one detect
// worker owns its state. The hash (FNV-1a, 64 bit) must never change: state and streams
// are laid out by it.
func Partition(identityID string, partitions uint32) uint32 {
	if partitions <= 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(identityID))
	return uint32(h.Sum64() % uint64(partitions))
}

// EventBatchMsgID is the Nats-Msg-Id of an NHI_EVENTS batch: its partition and the ids of
// its first and last event. A redelivered input yields the same batch and the same id.
func EventBatchMsgID(partition uint32, firstEventID, lastEventID string) string {
	return "p" + itoa(partition) + ":" + shortHash(firstEventID, lastEventID)
}

func itoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
