package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// normalizeCmd prints one normalized event per line as JSON to stdout and one line per
// rejected record, with its reason, to stderr, then a summary line per file. With -format
// auto the provider is detected per record; a record nothing identifies is read in the
// format of the file's other records. Broken files are reported and skipped; the exit status
// is non-zero only for usage errors.
func normalizeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("normalize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: nhiwatch normalize [-format auto|cloudtrail|gcp|k8s] [-cluster NAME] PATH...")
		fs.PrintDefaults()
	}
	format := fs.String("format", "auto", "record format: auto (detected per file and record), cloudtrail, gcp or k8s")
	cluster := fs.String("cluster", "default", "Kubernetes cluster name for k8s records")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	switch *format {
	case "auto", "cloudtrail", "gcp", "k8s":
	default:
		return usageError{fmt.Sprintf("-format %q: want auto, cloudtrail, gcp or k8s", *format)}
	}
	if *cluster == "" {
		return usageError{"-cluster must not be empty"}
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
		var normalized, rejected, skipped int
		fileFormat := ""
		err := ingest.ReadFile(path,
			func(index int, data []byte) error {
				in := normalize.Input{
					Data: data, Format: *format, Cluster: *cluster, Source: "cli",
					RecordID: events.RecordID("cli", fmt.Sprintf("file:%s#%d", path, index)),
					Position: "file:" + path, ReceivedAt: now,
				}
				ev, err := n.Normalize(in)
				if errors.Is(err, normalize.ErrUndetected) && fileFormat != "" {
					in.Format = fileFormat
					ev, err = n.Normalize(in)
				}
				switch {
				case errors.Is(err, normalize.ErrSkipped):
					skipped++
					return nil
				case err != nil:
					rejected++
					fmt.Fprintf(stderr, "%s#%d: rejected: %v\n", path, index, err)
					return nil
				}
				if fileFormat == "" {
					fileFormat = normalize.FormatOf(ev.Provider)
				}
				b, err := normalize.EventJSON(ev)
				if err != nil {
					return err
				}
				normalized++
				out.Write(b)
				return out.WriteByte('\n')
			},
			func(index int, reason error) error {
				rejected++
				fmt.Fprintf(stderr, "%s#%d: rejected: %v\n", path, index, reason)
				return nil
			})
		if err != nil {
			fmt.Fprintf(stderr, "%s: skipped: %v\n", path, err)
			continue
		}
		fmt.Fprintf(stderr, "%s: %d events, %d rejected, %d skipped\n", path, normalized, rejected, skipped)
	}
	return nil
}
