// Command nhiwatch is the all-in-one nhiwatch binary and its operator tools.
//
//	nhiwatch run       [-config FILE] [-exit-when-idle]   all four services in one process
//	nhiwatch normalize [-format auto|cloudtrail|gcp|k8s] [-cluster NAME] PATH...
//	nhiwatch replay    [-cluster NAME] [-catalog FILE] PATH...   findings of log files as JSON lines
//	nhiwatch usage     [-snapshot FILE]... [-cluster NAME] [-nhi] [-ocsf | -posture [-catalog FILE]] PATH...
//	nhiwatch grants    import [-config FILE] FILE|DIR... | list [-config FILE]   inventory snapshots into NHI_GRANTS
//	nhiwatch version
//
// `nhiwatch run` starts an embedded NATS JetStream server (data under ./data by default)
// unless nats.url is configured, and runs ingest, normalize, detect and notify on the same
// JetStream code paths as separate processes. ClickHouse is used when clickhouse.addr (or
// NHIWATCH_CLICKHOUSE_ADDR) is set.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs one subcommand and returns the process exit status: 0 on success, 1 when
// the command failed, 2 for a usage error.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runCmd(ctx, args[1:], stdout, stderr)
	case "normalize":
		err = normalizeCmd(ctx, args[1:], stdout, stderr)
	case "findings":
		err = findingsCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		err = replayCmd(ctx, args[1:], stdout, stderr)
	case "usage":
		err = usageCmd(ctx, args[1:], stdout, stderr)
	case "grants":
		err = grantsCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "nhiwatch", version)
	case "help", "-h", "-help", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "nhiwatch: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "nhiwatch:", err)
		if _, ok := err.(usageError); ok {
			return 2
		}
		return 1
	}
	return 0
}

// usageError is a command line mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: nhiwatch <command> [flags]

commands:
  run         run ingest, normalize, detect and notify in one process
  normalize   print normalized events of log files as JSON lines
  findings    list, show and triage findings (ack, resolve, suppress, reopen)
  replay      backtest the detectors on log files: findings as JSON lines
  usage       replay log files against inventory snapshots: granted, used, unused, denied per identity
  grants      import inventory snapshots (AWS, GCP, Kubernetes exports) for a running detect; list them
  version     print the version

Run "nhiwatch <command> -h" for the flags of a command.
`)
}
