package grants

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// MaxSnapshotBytes bounds one inventory file.
const MaxSnapshotBytes = 256 << 20

// ImportOptions say what an export file does not say itself.
type ImportOptions struct {
	// Cluster names the Kubernetes cluster of an RBAC export ("default" when empty).
	Cluster string
	// GCPResource names the resource of a bare GCP IAM policy (projects/p, folders/f,
	// organizations/o); empty applies the policy to every project.
	GCPResource string
	// Taken is when the export was taken; zero means the file's modification time.
	Taken time.Time
}

// ReadFile reads one inventory export, detecting its format, and returns its snapshots.
func ReadFile(path string, opts ImportOptions) ([]*Snapshot, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxSnapshotBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, over %d", ErrFormat, path, st.Size(), MaxSnapshotBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if opts.Taken.IsZero() {
		opts.Taken = st.ModTime().UTC()
	}
	snaps, err := Parse(data, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return snaps, nil
}

// Parse reads one inventory export held in memory, detecting its format.
func Parse(data []byte, opts ImportOptions) ([]*Snapshot, error) {
	if opts.Taken.IsZero() {
		opts.Taken = time.Now().UTC()
	}
	format, err := DetectFormat(data)
	if err != nil {
		return nil, err
	}
	one := func(s *Snapshot, err error) ([]*Snapshot, error) {
		if err != nil {
			return nil, err
		}
		return []*Snapshot{s}, nil
	}
	switch format {
	case FormatAWSAuthorizationDetails:
		return one(ImportAWSAuthorizationDetails(data, opts.Taken))
	case FormatAWSCredentialReport:
		return one(ImportAWSCredentialReport(data, opts.Taken))
	case FormatGCPIAMPolicy:
		return ImportGCPIAMPolicy(data, opts.GCPResource, opts.Taken)
	case FormatGCPRoles:
		return one(ImportGCPRoles(data, "", opts.Taken))
	case FormatK8sRBAC:
		return one(ImportK8sRBAC(data, opts.Cluster, opts.Taken))
	}
	return nil, fmt.Errorf("%w: unknown format %s", ErrFormat, format)
}

// DetectFormat tells which export a file holds from the fields each format always has.
func DetectFormat(data []byte) (string, error) {
	t := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if len(t) == 0 {
		return "", fmt.Errorf("%w: empty file", ErrFormat)
	}
	if bytes.HasPrefix(t, []byte("user,arn,")) {
		return FormatAWSCredentialReport, nil
	}
	var probe map[string]json.RawMessage
	switch t[0] {
	case '{':
		if err := json.Unmarshal(t, &probe); err != nil {
			return "", fmt.Errorf("%w: not valid JSON", ErrFormat)
		}
	case '[':
		var list []map[string]json.RawMessage
		if err := json.Unmarshal(t, &list); err != nil {
			return "", fmt.Errorf("%w: not a JSON list of objects", ErrFormat)
		}
		if len(list) == 0 {
			return "", fmt.Errorf("%w: empty list", ErrFormat)
		}
		probe = list[0]
		if _, ok := probe["policy"]; ok {
			return FormatGCPIAMPolicy, nil
		}
	default:
		return "", fmt.Errorf("%w: neither JSON nor a credential report CSV", ErrFormat)
	}
	has := func(k string) bool { _, ok := probe[k]; return ok }
	switch {
	case has("UserDetailList"), has("RoleDetailList"), has("GroupDetailList"):
		return FormatAWSAuthorizationDetails, nil
	case has("Content") && has("ReportFormat"):
		return FormatAWSCredentialReport, nil
	case has("bindings"), has("etag") && has("version") && !has("name"):
		return FormatGCPIAMPolicy, nil
	case has("includedPermissions"), has("name") && has("stage"):
		return FormatGCPRoles, nil
	case has("apiVersion") && has("kind"):
		var kind string
		_ = json.Unmarshal(probe["kind"], &kind)
		if kind == "List" || strings.HasSuffix(kind, "List") || strings.Contains(kind, "Role") {
			return FormatK8sRBAC, nil
		}
		return "", fmt.Errorf("%w: kubernetes kind %.40q is not RBAC", ErrFormat, kind)
	}
	return "", fmt.Errorf("%w: not an AWS, GCP or Kubernetes inventory export", ErrFormat)
}
