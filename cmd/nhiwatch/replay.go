package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/sync/errgroup"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/natsembed"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// replayCmd backtests the detectors on archived logs: it runs the real pipeline in this
// process — an embedded JetStream server in a temporary directory, raw records published to
// NHI_RAW in event-time order, the normalize service and the detect service (no ClickHouse)
// — and prints one JSON object per finding to stdout once the pipeline is idle, in event-time
// order. Records that cannot be read are reported on stderr.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cluster := fs.String("cluster", "default", "Kubernetes cluster name for k8s records")
	catalogPath := fs.String("catalog", "", "catalog YAML (owners, boundaries, thresholds, suppressions)")
	format := fs.String("format", "auto", "record format: auto, cloudtrail, gcp or k8s")
	partitions := fs.Uint("partitions", 16, "identity partitions (as in the deployment being backtested)")
	awsRanges := fs.String("aws-ip-ranges", "", "AWS ip-ranges.json, to flag instance credentials used outside AWS")
	verbose := fs.Bool("v", false, "log the pipeline's progress to stderr")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up when the pipeline is not idle after this long")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"replay needs at least one PATH"}
	}
	switch *format {
	case "auto", "cloudtrail", "gcp", "k8s":
	default:
		return usageError{fmt.Sprintf("-format %q: want auto, cloudtrail, gcp or k8s", *format)}
	}
	if *partitions < 1 || *partitions > 1024 {
		return usageError{"-partitions must be 1 to 1024"}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if !*verbose {
		// Without ClickHouse the detect service warns that nothing is stored: expected here.
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	r := replay{
		cluster: *cluster, format: *format, catalog: *catalogPath, awsRanges: *awsRanges,
		partitions: uint32(*partitions), log: log, stderr: stderr,
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	findings, err := r.run(ctx, fs.Args())
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for _, f := range findings {
		if err := enc.Encode(findingJSON(f)); err != nil {
			return err
		}
	}
	return nil
}

type replay struct {
	cluster, format, catalog, awsRanges string
	partitions                          uint32
	log                                 *slog.Logger
	stderr                              io.Writer
}

// record is one raw record with its event time, for ordering.
type record struct {
	id   string
	data []byte
	time int64
	seq  int
}

// read reads every file, keeps the records normalize accepts (reporting the others), and
// orders them by event time; records of equal time keep their file order.
func (r *replay) read(paths []string) []record {
	n := normalize.NewNormalizer()
	var recs []record
	for _, path := range paths {
		err := ingest.ReadFile(path,
			func(i int, data []byte) error {
				id := events.RecordID("replay", "file:"+path+"#"+strconv.Itoa(i))
				// Normalize may rewrite the bytes it parses: keep a copy to publish.
				data = bytes.Clone(data)
				ev, err := n.Normalize(normalize.Input{Data: bytes.Clone(data), Format: r.format, Cluster: r.cluster, Source: "replay", RecordID: id, Position: "file:" + path, ReceivedAt: time.Now()})
				if errors.Is(err, normalize.ErrSkipped) {
					return nil
				}
				if err != nil {
					fmt.Fprintf(r.stderr, "%s#%d: %v\n", path, i, err)
					return nil
				}
				recs = append(recs, record{id: id, data: data, time: ev.TimeUnixNano, seq: len(recs)})
				return nil
			},
			func(i int, reason error) error {
				fmt.Fprintf(r.stderr, "%s#%d: %v\n", path, i, reason)
				return nil
			})
		if err != nil {
			fmt.Fprintf(r.stderr, "%s: skipped: %v\n", path, err)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].time < recs[j].time })
	return recs
}

func (r *replay) run(ctx context.Context, paths []string) ([]*events.Finding, error) {
	recs := r.read(paths)
	dir, err := os.MkdirTemp("", "nhiwatch-replay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := natsembed.Start(natsembed.Options{StoreDir: dir, DontListen: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	connect := func(name string) (jetstream.JetStream, error) {
		nc, err := natsembed.Connect(ns, "nhiwatch-replay-"+name)
		if err != nil {
			return nil, err
		}
		conns = append(conns, nc)
		return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	}
	js, err := connect("main")
	if err != nil {
		return nil, err
	}
	sc := streams.DefaultConfig()
	sc.Partitions = r.partitions
	if err := streams.Ensure(ctx, js, sc); err != nil {
		return nil, err
	}
	meter := noop.NewMeterProvider().Meter("replay")
	ncfg := normalize.DefaultConfig()
	ncfg.Workers = 1 // one worker keeps the event-time order of the raw batches
	njs, err := connect("normalize")
	if err != nil {
		return nil, err
	}
	norm, err := normalize.New(ncfg, normalize.Deps{Logger: r.log.With("service", "normalize"), Meter: meter, JS: njs, Streams: sc})
	if err != nil {
		return nil, err
	}
	dcfg := detect.DefaultConfig()
	dcfg.Catalog = r.catalog
	dcfg.AWSIPRanges = r.awsRanges
	dcfg.WorkerID = "replay"
	djs, err := connect("detect")
	if err != nil {
		return nil, err
	}
	det, err := detect.New(dcfg, detect.Deps{Logger: r.log.With("service", "detect"), Meter: meter, JS: djs, Streams: sc})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return norm.Run(gctx) })
	g.Go(func() error { return det.Run(gctx) })
	if err := r.publish(ctx, js, recs); err != nil {
		stop()
		_ = g.Wait()
		return nil, err
	}
	r.log.Info("records published", "records", len(recs))
	idleErr := waitPipelineIdle(gctx, js, r.partitions)
	stop()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	if idleErr != nil {
		return nil, fmt.Errorf("replay: pipeline did not finish: %w", idleErr)
	}
	return readFindings(ctx, js)
}

// publish sends the records to NHI_RAW in order, as batches like a files source would.
func (r *replay) publish(ctx context.Context, js jetstream.JetStream, recs []record) error {
	const perBatch = 200
	pub := streams.NewPublisher(js)
	provider := map[string]events.Provider{"cloudtrail": events.Provider_PROVIDER_AWS, "gcp": events.Provider_PROVIDER_GCP, "k8s": events.Provider_PROVIDER_K8S}[r.format]
	now := time.Now()
	for start := 0; start < len(recs); start += perBatch {
		end := min(start+perBatch, len(recs))
		b := &events.RawBatch{Source: "replay", Provider: provider, Format: r.format, Cluster: r.cluster, Position: "replay#" + strconv.Itoa(start), ReceivedUnixNano: now.UnixNano()}
		for _, rec := range recs[start:end] {
			b.Records = append(b.Records, &events.RawRecord{Id: rec.id, Data: rec.data})
		}
		data, err := events.Marshal(b)
		if err != nil {
			return err
		}
		m := nats.NewMsg(events.RawSubject(provider))
		m.Header.Set(events.HeaderMsgID, "replay:"+strconv.Itoa(start)+"-"+strconv.Itoa(end))
		m.Header.Set(events.HeaderSource, "replay")
		m.Header.Set(events.HeaderReceivedAt, now.Format(time.RFC3339Nano))
		m.Data = data
		// One batch at a time: normalize reads them in this order.
		if err := pub.Publish(ctx, m); err != nil {
			return fmt.Errorf("replay: publish records: %w", err)
		}
	}
	return nil
}

// waitPipelineIdle returns once normalize and every detect partition have consumed and
// acknowledged everything, three checks in a row.
func waitPipelineIdle(ctx context.Context, js jetstream.JetStream, partitions uint32) error {
	calm := 0
	for calm < 3 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		busy, err := pipelineBusy(ctx, js, partitions)
		if err != nil {
			return err
		}
		if busy {
			calm = 0
		} else {
			calm++
		}
	}
	return nil
}

func pipelineBusy(ctx context.Context, js jetstream.JetStream, partitions uint32) (bool, error) {
	names := []struct{ stream, consumer string }{{events.StreamRaw, normalize.ConsumerName}}
	for p := uint32(0); p < partitions; p++ {
		names = append(names, struct{ stream, consumer string }{events.StreamEvents, fmt.Sprintf("detect-p%03d", p)})
	}
	for _, n := range names {
		c, err := js.Consumer(ctx, n.stream, n.consumer)
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return true, nil // not started yet
			}
			return false, err
		}
		info, err := c.Info(ctx)
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return true, nil
			}
			return false, err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return true, nil
		}
	}
	return false, nil
}

// readFindings reads NHI_FINDINGS and returns the findings in event-time order.
func readFindings(ctx context.Context, js jetstream.JetStream) ([]*events.Finding, error) {
	c, err := js.OrderedConsumer(ctx, events.StreamFindings, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []*events.Finding
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			f, err := events.UnmarshalFinding(m.Data())
			if err != nil {
				return nil, err
			}
			out = append(out, f)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].TimeUnixNano != out[j].TimeUnixNano {
			return out[i].TimeUnixNano < out[j].TimeUnixNano
		}
		return out[i].Id < out[j].Id
	})
	return out, nil
}

// replayFinding is the JSON line of one finding.
type replayFinding struct {
	ID             string           `json:"id"`
	Detector       string           `json:"detector"`
	Severity       string           `json:"severity"`
	Time           string           `json:"time"`
	Identity       string           `json:"identity"`
	IdentityKind   string           `json:"identity_kind,omitempty"`
	Credential     string           `json:"credential"`
	Owner          string           `json:"owner,omitempty"`
	Team           string           `json:"team,omitempty"`
	Grantee        string           `json:"grantee,omitempty"`
	Account        string           `json:"account,omitempty"`
	Region         string           `json:"region,omitempty"`
	Title          string           `json:"title"`
	Summary        string           `json:"summary"`
	Cause          string           `json:"cause"`
	Recommendation string           `json:"recommendation,omitempty"`
	OWASPNHI       []string         `json:"owasp_nhi,omitempty"`
	MITREATTACK    []string         `json:"mitre_attack,omitempty"`
	Evidence       []replayEvidence `json:"evidence"`
	Permissions    []string         `json:"permissions_added,omitempty"`
	Sensitive      []string         `json:"sensitive_permissions_added,omitempty"`
}

type replayEvidence struct {
	EventID    string            `json:"event_id"`
	Time       string            `json:"time"`
	Action     string            `json:"action,omitempty"`
	Permission string            `json:"permission,omitempty"`
	IP         string            `json:"ip,omitempty"`
	UserAgent  string            `json:"user_agent,omitempty"`
	Region     string            `json:"region,omitempty"`
	Fields     map[string]string `json:"fields,omitempty"`
}

func findingJSON(f *events.Finding) replayFinding {
	out := replayFinding{
		ID: f.Id, Detector: f.Detector, Severity: f.Severity.Label(), Time: rfc3339(f.TimeUnixNano),
		Identity: f.GetIdentity().GetId(), IdentityKind: f.GetIdentity().GetKind().Label(), Credential: f.GetCredential().GetId(),
		Owner: f.Owner, Team: f.Team, Grantee: f.Grantee, Account: f.Account, Region: f.Region,
		Title: f.Title, Summary: f.Summary, Cause: f.Cause, Recommendation: f.Recommendation,
		OWASPNHI: f.OwaspNhi, MITREATTACK: f.MitreAttack, Permissions: f.PermissionsAdded, Sensitive: f.SensitivePermissionsAdded,
		Evidence: []replayEvidence{},
	}
	for _, e := range f.Evidence {
		out.Evidence = append(out.Evidence, replayEvidence{
			EventID: e.EventId, Time: rfc3339(e.TimeUnixNano), Action: e.Action, Permission: e.Permission,
			IP: e.Ip, UserAgent: e.UserAgent, Region: e.Region, Fields: e.Fields,
		})
	}
	return out
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }
