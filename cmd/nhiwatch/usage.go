package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// usageCmd replays log files against inventory snapshots and prints, per identity, one JSON
// object: what it was granted, what it used, what it never used, what it was refused, and
// the least-privilege policy its use needs. With -ocsf the objects are OCSF IAM Analysis
// Findings (class 2008); with -posture it prints the posture findings of the replayed state
// instead. Everything runs in process.
func usageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var snapshots []string
	fs.Func("snapshot", "inventory export to evaluate against (repeatable): AWS authorization details or credential report, GCP IAM policy or roles, Kubernetes RBAC list", func(s string) error {
		snapshots = append(snapshots, s)
		return nil
	})
	format := fs.String("format", "auto", "record format: auto, cloudtrail, gcp or k8s")
	cluster := fs.String("cluster", "default", "Kubernetes cluster name of the audit logs and RBAC snapshots")
	gcpResource := fs.String("gcp-resource", "", "resource of a bare GCP IAM policy snapshot, e.g. projects/my-project")
	takenFlag := fs.String("taken", "", "when the snapshots were taken, RFC 3339 (default: each file's modification time); grant changes in the logs older than that are already in the snapshot")
	nhiOnly := fs.Bool("nhi", false, "print non-human identities only")
	asOCSF := fs.Bool("ocsf", false, "print OCSF 1.6 IAM Analysis Findings (class_uid 2008) instead of reports")
	posture := fs.Bool("posture", false, "print the posture findings (no owner, key rotation, standing admin) instead of reports")
	catalogPath := fs.String("catalog", "", "catalog file (owners, kinds, suppressions) for -posture")
	nowFlag := fs.String("now", "", "evaluation time, RFC 3339, for -posture and -ocsf (default: the last event's time for -posture, the current time for -ocsf)")
	rotation := fs.Duration("key-rotation-age", 90*24*time.Hour, "keys last rotated longer ago are findings (-posture)")
	standing := fs.Duration("standing-admin-window", 90*24*time.Hour, "admin grants without an admin action for this long are findings (-posture)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *asOCSF && *posture {
		return usageError{"-ocsf and -posture print different things: choose one"}
	}
	now, err := parseTime("-now", *nowFlag)
	if err != nil {
		return err
	}
	switch *format {
	case "auto", "cloudtrail", "gcp", "k8s":
	default:
		return usageError{fmt.Sprintf("-format %q: want auto, cloudtrail, gcp or k8s", *format)}
	}
	if fs.NArg() == 0 && len(snapshots) == 0 {
		return usageError{"usage needs at least one PATH or -snapshot"}
	}
	if *cluster == "" {
		*cluster = "default"
	}
	replay := detect.NewUsageReplay()
	taken, err := parseTime("-taken", *takenFlag)
	if err != nil {
		return err
	}
	snaps, err := detect.ReadSnapshots(snapshots, detect.SnapshotOptions{Cluster: *cluster, GCPResource: *gcpResource, Taken: taken})
	if err != nil {
		return err
	}
	if err := replay.Import(snaps...); err != nil {
		return err
	}

	// Events are observed in event-time order, so that grant changes apply before the uses
	// that follow them, whatever order the files list them in.
	var evs []*events.Event
	n := normalize.NewNormalizer()
	received := time.Now()
	for _, path := range fs.Args() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err := ingest.ReadFile(path,
			func(index int, data []byte) error {
				ev, err := n.Normalize(normalize.Input{
					Data: data, Format: *format, Cluster: *cluster, Source: "cli",
					RecordID: events.RecordID("cli", fmt.Sprintf("file:%s#%d", path, index)),
					Position: "file:" + path, ReceivedAt: received,
				})
				if err != nil {
					fmt.Fprintf(stderr, "%s#%d: %v\n", path, index, err)
					return nil
				}
				evs = append(evs, ev)
				return nil
			},
			func(index int, reason error) error {
				fmt.Fprintf(stderr, "%s#%d: %v\n", path, index, reason)
				return nil
			})
		if err != nil {
			fmt.Fprintf(stderr, "%s: skipped: %v\n", path, err)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].TimeUnixNano < evs[j].TimeUnixNano })
	for _, ev := range evs {
		replay.Observe(ev)
	}

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	if *posture {
		findings, err := replay.Posture(detect.PostureOptions{Catalog: *catalogPath, Now: now, KeyRotationAge: *rotation, StandingAdminWindow: *standing})
		if err != nil {
			return err
		}
		for _, f := range findings {
			if err := enc.Encode(findingJSON(f)); err != nil {
				return err
			}
		}
		return nil
	}
	if now.IsZero() {
		now = time.Now().UTC()
	}
	for _, r := range replay.Reports() {
		if *nhiOnly {
			if k, err := events.ParseIdentityKind(r.Kind); err == nil && !k.IsNHI() {
				continue
			}
		}
		if !*asOCSF {
			if err := enc.Encode(r); err != nil {
				return err
			}
			continue
		}
		doc, err := detect.UsageOCSF(r, now, version)
		if err != nil {
			return err
		}
		if _, err := out.Write(append(doc, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// parseTime reads an RFC 3339 flag value; empty is the zero time.
func parseTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usageError{fmt.Sprintf("%s %q: want an RFC 3339 time such as 2024-11-15T12:00:00Z", flag, v)}
	}
	return t.UTC(), nil
}
