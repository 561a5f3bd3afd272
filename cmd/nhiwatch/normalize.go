package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// normalizeCmd prints one normalized event per line as JSON to stdout and one line per
// rejected record, with its reason, to stderr. Broken files are reported and skipped; the
// exit status is non-zero only for usage errors.
func normalizeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("normalize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "auto", "record format: auto, cloudtrail, gcp or k8s")
	cluster := fs.String("cluster", "default", "Kubernetes cluster name for k8s records")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	switch *format {
	case "auto", "cloudtrail", "gcp", "k8s":
	default:
		return usageError{fmt.Sprintf("-format %q: want auto, cloudtrail, gcp or k8s", *format)}
	}
	if fs.NArg() == 0 {
		return usageError{"normalize needs at least one PATH"}
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	n := normalize.NewNormalizer()
	now := time.Now()
	for _, path := range fs.Args() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		clusterName := *cluster
		if clusterName == "" {
			clusterName = "default"
		}
		err := ingest.ReadFile(path,
			func(index int, data []byte) error {
				ev, err := n.Normalize(normalize.Input{
					Data: data, Format: *format, Cluster: clusterName, Source: "cli",
					RecordID: events.RecordID("cli", fmt.Sprintf("file:%s#%d", path, index)),
					Position: "file:" + path, ReceivedAt: now,
				})
				if err != nil {
					fmt.Fprintf(stderr, "%s#%d: %v\n", path, index, err)
					return nil
				}
				b, err := normalize.EventJSON(ev)
				if err != nil {
					return err
				}
				out.Write(b)
				return out.WriteByte('\n')
			},
			func(index int, reason error) error {
				fmt.Fprintf(stderr, "%s#%d: %v\n", path, index, reason)
				return nil
			})
		if err != nil {
			fmt.Fprintf(stderr, "%s: skipped: %v\n", path, err)
		}
	}
	return nil
}
