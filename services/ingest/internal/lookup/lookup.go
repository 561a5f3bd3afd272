// Package lookup polls the CloudTrail LookupEvents API of one or more accounts and regions:
// the 90-day management-event history, without a trail. Each account and region has its own
// client, credentials and rate limiter (the API allows 2 requests per second per account
// and region), follows NextToken pagination, and keeps a checkpoint in NHI_CURSORS: a
// watermark before which every event was looked up, and the ids of the events seen in the
// overlap window. Every poll starts at watermark − overlap because CloudTrail makes events
// visible minutes late; the seen ids (and the Nats-Msg-Id) drop those already published.
package lookup

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
	"github.com/aws/smithy-go"
	"golang.org/x/time/rate"

	"github.com/nhiwatch/nhiwatch/services/ingest/internal/awsconf"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/cursor"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

// Target is one account and region to poll, with its own credentials and endpoint.
type Target struct {
	// Account is the AWS account id; it is part of the record ids and of the checkpoint key.
	Account        string `yaml:"account"`
	awsconf.Config `yaml:",inline"`
}

// Config configures a lookup source.
type Config struct {
	Targets []Target `yaml:"targets"`
	// PollInterval is the wait between two polls of a target.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Overlap is how far before the watermark each poll starts again, to catch events that
	// CloudTrail made visible late.
	Overlap time.Duration `yaml:"overlap"`
	// Lookback is how far back the first poll of a target starts (at most 90 days).
	Lookback time.Duration `yaml:"lookback"`
	// Slice bounds the time range of one pass; the watermark moves after each slice, so a
	// long first poll is checkpointed as it goes.
	Slice time.Duration `yaml:"slice"`
	// RequestsPerSecond is each target's rate; CloudTrail allows 2.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// ReadOnly, when "true" or "false", keeps only read-only or only write events.
	ReadOnly string `yaml:"read_only"`
	// MaxSeen bounds the event ids remembered per target for de-duplication.
	MaxSeen int `yaml:"max_seen"`
}

// DefaultConfig returns the defaults of a lookup source.
func DefaultConfig() Config {
	return Config{
		PollInterval:      time.Minute,
		Overlap:           15 * time.Minute,
		Lookback:          time.Hour,
		Slice:             time.Hour,
		RequestsPerSecond: 2,
		MaxSeen:           20000,
	}
}

// WithDefaults fills the settings a configuration file left out.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.Overlap == 0 {
		c.Overlap = d.Overlap
	}
	if c.Lookback == 0 {
		c.Lookback = d.Lookback
	}
	if c.Slice == 0 {
		c.Slice = d.Slice
	}
	if c.RequestsPerSecond == 0 {
		c.RequestsPerSecond = d.RequestsPerSecond
	}
	if c.MaxSeen == 0 {
		c.MaxSeen = d.MaxSeen
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if len(c.Targets) == 0 {
		return errors.New("lookup: at least one target is required")
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		if len(t.Account) != 12 || strings.Trim(t.Account, "0123456789") != "" {
			return fmt.Errorf("lookup: target %d: account must be a 12-digit AWS account id", i)
		}
		if err := t.Config.Validate(); err != nil {
			return fmt.Errorf("lookup: target %s: %w", t.Account, err)
		}
		k := t.Account + "/" + t.Region
		if seen[k] {
			return fmt.Errorf("lookup: account %s and region %s are listed twice", t.Account, t.Region)
		}
		seen[k] = true
	}
	switch {
	case c.PollInterval <= 0:
		return errors.New("lookup: poll_interval must be positive")
	case c.Overlap < 0:
		return errors.New("lookup: overlap must not be negative")
	case c.Lookback <= 0 || c.Lookback > 90*24*time.Hour:
		return errors.New("lookup: lookback must be positive and at most 90 days")
	case c.Slice < time.Minute:
		return errors.New("lookup: slice must be at least 1m")
	case c.RequestsPerSecond <= 0:
		return errors.New("lookup: requests_per_second must be positive")
	case c.ReadOnly != "" && c.ReadOnly != "true" && c.ReadOnly != "false":
		return errors.New(`lookup: read_only must be "true", "false" or empty`)
	case c.MaxSeen < 100:
		return errors.New("lookup: max_seen must be at least 100")
	}
	return nil
}

// API is the part of the CloudTrail client the poller uses.
type API interface {
	LookupEvents(ctx context.Context, in *cloudtrail.LookupEventsInput, optFns ...func(*cloudtrail.Options)) (*cloudtrail.LookupEventsOutput, error)
}

var _ API = (*cloudtrail.Client)(nil)

// Source polls every target.
type Source struct {
	cfg     Config
	sink    *sink.Sink
	cursors *cursor.Store
	limits  split.Limits
	log     *slog.Logger
	clients []API
}

// New returns a lookup source with one client per target (no call is made yet).
func New(ctx context.Context, cfg Config, s *sink.Sink, cursors *cursor.Store, limits split.Limits, log *slog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	src := &Source{cfg: cfg, sink: s, cursors: cursors, limits: limits, log: log}
	for _, t := range cfg.Targets {
		awsCfg, err := t.Load(ctx)
		if err != nil {
			return nil, fmt.Errorf("lookup: target %s/%s: %w", t.Account, t.Region, err)
		}
		src.clients = append(src.clients, cloudtrail.NewFromConfig(awsCfg))
	}
	return src, nil
}

// Run polls every target until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i, t := range s.cfg.Targets {
		p := &poller{src: s, target: t, api: s.clients[i],
			limiter: rate.NewLimiter(rate.Limit(s.cfg.RequestsPerSecond), 1),
			log:     s.log.With("account", t.Account, "region", t.Region)}
		wg.Go(func() { p.run(ctx) })
	}
	wg.Wait()
	return nil
}

// checkpoint is a target's cursor.
type checkpoint struct {
	// Watermark: every event before it was looked up (as CloudTrail showed it then).
	Watermark time.Time `json:"watermark"`
	// Seen maps a hash of each event id published in the overlap window to its event
	// time (Unix seconds).
	Seen map[string]int64 `json:"seen"`
}

type poller struct {
	src     *Source
	target  Target
	api     API
	limiter *rate.Limiter
	log     *slog.Logger
	cp      checkpoint
}

func (p *poller) key() string { return p.target.Account + "/" + p.target.Region }

func (p *poller) run(ctx context.Context) {
	err := p.src.sink.Retry(ctx, "load checkpoint", func() error {
		ok, err := p.src.cursors.Load(ctx, p.key(), &p.cp)
		if err == nil && !ok {
			p.cp = checkpoint{Watermark: p.src.sink.Now().Add(-p.src.cfg.Lookback)}
		}
		return err
	})
	if err != nil {
		return
	}
	if p.cp.Seen == nil {
		p.cp.Seen = map[string]int64{}
	}
	for {
		if err := p.poll(ctx); err != nil {
			return // ctx ended
		}
		if !sleep(ctx, p.src.cfg.PollInterval) {
			return
		}
	}
}

// poll looks up everything from watermark − overlap to now, slice by slice.
func (p *poller) poll(ctx context.Context) error {
	end := p.src.sink.Now()
	start := p.cp.Watermark.Add(-p.src.cfg.Overlap)
	for from := start; from.Before(end); from = from.Add(p.src.cfg.Slice) {
		to := from.Add(p.src.cfg.Slice)
		if to.After(end) {
			to = end
		}
		if err := p.slice(ctx, from, to); err != nil {
			return err
		}
		if to.After(p.cp.Watermark) {
			p.cp.Watermark = to
		}
		p.prune()
		if err := p.save(ctx); err != nil {
			return err
		}
	}
	return nil
}

// slice reads every page of [from, to] and publishes the events not seen yet.
func (p *poller) slice(ctx context.Context, from, to time.Time) error {
	in := &cloudtrail.LookupEventsInput{StartTime: aws.Time(from), EndTime: aws.Time(to), MaxResults: aws.Int32(50)}
	if p.src.cfg.ReadOnly != "" {
		in.LookupAttributes = []types.LookupAttribute{{AttributeKey: types.LookupAttributeKeyReadOnly, AttributeValue: aws.String(p.src.cfg.ReadOnly)}}
	}
	for {
		out, err := p.call(ctx, in)
		if err != nil {
			return err
		}
		if err := p.publish(ctx, out.Events); err != nil {
			return err
		}
		if aws.ToString(out.NextToken) == "" {
			return nil
		}
		in.NextToken = out.NextToken
	}
}

// call makes one rate-limited request, retrying throttling (ThrottlingException) and other
// failures with the source's back-off until it succeeds or ctx ends.
func (p *poller) call(ctx context.Context, in *cloudtrail.LookupEventsInput) (*cloudtrail.LookupEventsOutput, error) {
	var out *cloudtrail.LookupEventsOutput
	err := p.src.sink.Retry(ctx, "lookup events "+p.key(), func() error {
		if err := p.limiter.Wait(ctx); err != nil {
			return err
		}
		o, err := p.api.LookupEvents(ctx, in)
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidNextTokenException" {
			// The token expired: start the slice over; the seen ids drop repeats.
			in.NextToken = nil
		}
		out = o
		return err
	})
	return out, err
}

// publish publishes a page's events that were not seen yet, then remembers them.
func (p *poller) publish(ctx context.Context, evs []types.Event) error {
	pos := "lookup:" + p.key()
	batch := p.src.sink.NewBatch(pos)
	splitter := split.New(p.src.limits)
	var fresh []types.Event
	for _, e := range evs {
		id := aws.ToString(e.EventId)
		if id == "" {
			continue
		}
		if _, dup := p.cp.Seen[seenKey(id)]; dup {
			continue
		}
		fresh = append(fresh, e)
		recPos := pos + "/" + id
		raw := []byte(aws.ToString(e.CloudTrailEvent))
		err := splitter.Split(raw, func(r split.Record) error {
			return batch.Add(sink.Record{Position: recPos, Data: r.Data, Time: r.Time})
		}, func(r split.Rejected) error {
			return p.src.sink.Reject(ctx, recPos, r.Data, r.Reason)
		})
		if err != nil {
			if err := p.src.sink.Reject(ctx, recPos, nil, fmt.Errorf("CloudTrailEvent: %w", err)); err != nil {
				return err
			}
		}
	}
	if err := p.src.sink.PublishWait(ctx, batch); err != nil {
		return err
	}
	if len(fresh) == 0 {
		return nil
	}
	for _, e := range fresh {
		p.cp.Seen[seenKey(aws.ToString(e.EventId))] = aws.ToTime(e.EventTime).Unix()
	}
	return p.save(ctx)
}

// prune forgets the ids of events older than the next poll's start, and the oldest ones
// past MaxSeen (the Nats-Msg-Id and idempotent consumers still drop those repeats).
func (p *poller) prune() {
	cut := p.cp.Watermark.Add(-p.src.cfg.Overlap - time.Minute).Unix()
	maps.DeleteFunc(p.cp.Seen, func(_ string, t int64) bool { return t < cut })
	if extra := len(p.cp.Seen) - p.src.cfg.MaxSeen; extra > 0 {
		keys := slices.SortedFunc(maps.Keys(p.cp.Seen), func(a, b string) int { return int(p.cp.Seen[a] - p.cp.Seen[b]) })
		for _, k := range keys[:extra] {
			delete(p.cp.Seen, k)
		}
	}
}

func (p *poller) save(ctx context.Context) error {
	return p.src.sink.Retry(ctx, "save checkpoint", func() error { return p.src.cursors.Save(ctx, p.key(), p.cp) })
}

// seenKey is a short hash of an event id, to keep checkpoints small.
func seenKey(id string) string {
	h := fnv.New64a()
	h.Write([]byte(id))
	return strconv.FormatUint(h.Sum64(), 36)
}

// sleep waits d or until ctx ends, and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
