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
// the least-privilege policy its use needs. Everything runs in process.
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
	nhiOnly := fs.Bool("nhi", false, "print non-human identities only")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
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
	snaps, err := detect.ReadSnapshots(snapshots, detect.SnapshotOptions{Cluster: *cluster, GCPResource: *gcpResource})
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
	now := time.Now()
	for _, path := range fs.Args() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err := ingest.ReadFile(path,
			func(index int, data []byte) error {
				ev, err := n.Normalize(normalize.Input{
					Data: data, Format: *format, Cluster: *cluster, Source: "cli",
					RecordID: events.RecordID("cli", fmt.Sprintf("file:%s#%d", path, index)),
					Position: "file:" + path, ReceivedAt: now,
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
	for _, r := range replay.Reports() {
		if *nhiOnly {
			if k, err := events.ParseIdentityKind(r.Kind); err == nil && !k.IsNHI() {
				continue
			}
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}
