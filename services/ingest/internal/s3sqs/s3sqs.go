// Package s3sqs reads CloudTrail log files from S3 as SQS announces them: S3 event
// notifications, the same through SNS, CloudTrail's own SNS notifications and EventBridge
// events, for single-account and organization trails across many accounts and regions.
//
// An SQS message is deleted only after every record of every object it announces is
// acknowledged by JetStream. While an object is read, the message's visibility is extended,
// and the object's progress is a cursor, so a restart resumes inside a large object. An
// object that can never be read (truncated gzip, not JSON, gone) is dead-lettered with its
// reason and its message deleted; a transient failure leaves the message for redelivery.
package s3sqs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/awsconf"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/cursor"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

// Config configures an s3sqs source.
type Config struct {
	// Region, credentials and a common endpoint of the S3 and SQS clients.
	awsconf.Config `yaml:",inline"`
	// QueueURL is the SQS queue that receives the notifications.
	QueueURL string `yaml:"queue_url"`
	// S3Endpoint and SQSEndpoint override the endpoint per service; S3PathStyle addresses
	// buckets in the path (S3-compatible stores, local servers).
	S3Endpoint  string `yaml:"s3_endpoint"`
	SQSEndpoint string `yaml:"sqs_endpoint"`
	S3PathStyle bool   `yaml:"s3_path_style"`
	// Workers is how many messages are processed at once.
	Workers int `yaml:"workers"`
	// WaitTime is the SQS long-poll wait (at most 20s).
	WaitTime time.Duration `yaml:"wait_time"`
	// VisibilityTimeout hides a received message from other readers; it is extended every
	// half period while the message's objects are read.
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"`
	// RetryDelay is how long a message whose objects failed transiently stays hidden
	// before it is retried.
	RetryDelay time.Duration `yaml:"retry_delay"`
	// Accounts and Regions, when set, keep only CloudTrail files of those accounts and
	// regions (read from the key); other objects are acknowledged and skipped.
	Accounts []string `yaml:"accounts"`
	Regions  []string `yaml:"regions"`
	// ChunkRecords is how many records are acknowledged between saves of an object's cursor.
	ChunkRecords int `yaml:"chunk_records"`
	// BacklogInterval is how often the queue's approximate message count is read.
	BacklogInterval time.Duration `yaml:"backlog_interval"`
}

// DefaultConfig returns the defaults of an s3sqs source.
func DefaultConfig() Config {
	return Config{
		Workers:           2,
		WaitTime:          20 * time.Second,
		VisibilityTimeout: 5 * time.Minute,
		RetryDelay:        30 * time.Second,
		ChunkRecords:      5000,
		BacklogInterval:   time.Minute,
	}
}

// WithDefaults fills the settings a configuration file left out.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.WaitTime == 0 {
		c.WaitTime = d.WaitTime
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = d.VisibilityTimeout
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = d.RetryDelay
	}
	if c.ChunkRecords == 0 {
		c.ChunkRecords = d.ChunkRecords
	}
	if c.BacklogInterval == 0 {
		c.BacklogInterval = d.BacklogInterval
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return fmt.Errorf("s3sqs: %w", err)
	}
	switch {
	case c.QueueURL == "":
		return errors.New("s3sqs: queue_url is required")
	case c.Workers < 1 || c.Workers > 64:
		return errors.New("s3sqs: workers must be 1 to 64")
	case c.WaitTime < 0 || c.WaitTime > 20*time.Second:
		return errors.New("s3sqs: wait_time must be 0 to 20s")
	case c.VisibilityTimeout < time.Second || c.VisibilityTimeout > 12*time.Hour:
		return errors.New("s3sqs: visibility_timeout must be 1s to 12h")
	case c.RetryDelay < 0 || c.RetryDelay > 12*time.Hour:
		return errors.New("s3sqs: retry_delay must be 0 to 12h")
	case c.ChunkRecords < 1:
		return errors.New("s3sqs: chunk_records must be positive")
	case c.BacklogInterval < time.Second:
		return errors.New("s3sqs: backlog_interval must be at least 1s")
	}
	return nil
}

// Source reads the objects an SQS queue announces.
type Source struct {
	cfg     Config
	sink    *sink.Sink
	cursors *cursor.Store
	limits  split.Limits
	log     *slog.Logger
	s3      *s3.Client
	sqs     *sqs.Client
}

// New returns an s3sqs source; it loads the AWS configuration (no call is made yet).
func New(ctx context.Context, cfg Config, s *sink.Sink, cursors *cursor.Store, limits split.Limits, log *slog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	awsCfg, err := cfg.Load(ctx)
	if err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.S3PathStyle
		if cfg.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.S3Endpoint)
		}
	})
	sqsc := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if cfg.SQSEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.SQSEndpoint)
		}
	})
	return &Source{cfg: cfg, sink: s, cursors: cursors, limits: limits, log: log, s3: s3c, sqs: sqsc}, nil
}

// Run receives and processes messages until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.watchBacklog(ctx) })
	for range s.cfg.Workers {
		wg.Go(func() { s.worker(ctx) })
	}
	wg.Wait()
	return nil
}

func (s *Source) worker(ctx context.Context) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		out, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(s.cfg.QueueURL),
			MaxNumberOfMessages:         10,
			WaitTimeSeconds:             int32(s.cfg.WaitTime / time.Second),
			VisibilityTimeout:           int32(s.cfg.VisibilityTimeout / time.Second),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.sink.CountError(ctx)
			s.log.Warn("sqs receive failed", "error", err, "retry_in", wait.String())
			sleep(ctx, wait)
			wait = min(2*wait, time.Minute)
			continue
		}
		wait = 100 * time.Millisecond
		for _, m := range out.Messages {
			if ctx.Err() != nil {
				return
			}
			s.message(ctx, m)
		}
	}
}

// message processes one SQS message: all its objects, then the delete.
func (s *Source) message(ctx context.Context, m sqstypes.Message) {
	body := []byte(aws.ToString(m.Body))
	objs, err := parseNotification(body)
	if err != nil {
		// A message we cannot read will never succeed: keep it in NHI_DLQ and delete it.
		if err := s.sink.Retry(ctx, "dead-letter sqs message", func() error {
			return s.sink.Reject(ctx, "sqs:"+aws.ToString(m.MessageId), redact.Text(truncate(body)), err)
		}); err != nil {
			return
		}
		s.delete(ctx, m, nil)
		return
	}
	objs = slices.DeleteFunc(objs, func(o object) bool { return !s.wanted(o.Key) })
	if len(objs) > 0 {
		stop := s.keepInvisible(ctx, m)
		err = s.objects(ctx, objs)
		stop()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.sink.CountError(ctx)
			s.log.Warn("object read failed, message left for redelivery", "message_id", aws.ToString(m.MessageId), "error", err, "retry_in", s.cfg.RetryDelay.String())
			s.changeVisibility(ctx, m, s.cfg.RetryDelay)
			return
		}
	}
	s.delete(ctx, m, objs)
}

// wanted reports whether a key is a log file to read: not a digest, not a folder, and of a
// configured account and region when those are set.
func (s *Source) wanted(key string) bool {
	if isDigest(key) || key == "" || key[len(key)-1] == '/' {
		return false
	}
	if len(s.cfg.Accounts) == 0 && len(s.cfg.Regions) == 0 {
		return true
	}
	k, ok := parseKey(key)
	if !ok {
		return false
	}
	return (len(s.cfg.Accounts) == 0 || slices.Contains(s.cfg.Accounts, k.Account)) &&
		(len(s.cfg.Regions) == 0 || slices.Contains(s.cfg.Regions, k.Region))
}

func (s *Source) objects(ctx context.Context, objs []object) error {
	for _, o := range objs {
		if err := s.object(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// objectCursor is the progress inside one object.
type objectCursor struct {
	ETag string `json:"etag"`
	Next int    `json:"next_index"`
}

// errPermanent marks an object that can never be read.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

// object publishes every record of one object from its cursor on. A permanent failure is
// dead-lettered and returns nil; a transient one returns an error.
func (s *Source) object(ctx context.Context, o object) error {
	pos := "s3://" + o.Bucket + "/" + o.Key
	data, etag, err := s.get(ctx, o)
	var perm errPermanent
	if errors.As(err, &perm) {
		s.log.Warn("skipping unreadable object", "object", pos, "error", perm.err)
		return s.sink.Retry(ctx, "dead-letter object", func() error { return s.sink.Reject(ctx, pos, nil, perm.err) })
	}
	if err != nil {
		return err
	}
	var cur objectCursor
	if _, err := s.cursors.Load(ctx, pos, &cur); err != nil {
		return err
	}
	if cur.ETag != etag {
		cur = objectCursor{ETag: etag}
	}
	batch := s.sink.NewBatch(pos)
	chunk := 0
	emit := func(r split.Record) error {
		if r.Index < cur.Next {
			return nil
		}
		if err := batch.Add(sink.Record{Position: pos + "#" + strconv.Itoa(r.Index), Data: r.Data, Time: r.Time}); err != nil {
			return err
		}
		if chunk++; chunk < s.cfg.ChunkRecords {
			return nil
		}
		chunk = 0
		if err := s.sink.PublishWait(ctx, batch); err != nil {
			return err
		}
		cur.Next = r.Index + 1
		return s.cursors.Save(ctx, pos, cur)
	}
	reject := func(r split.Rejected) error {
		if r.Index < cur.Next {
			return nil
		}
		return s.sink.Reject(ctx, pos+"#"+strconv.Itoa(r.Index), r.Data, r.Reason)
	}
	if err := split.New(s.limits).Split(data, emit, reject); err != nil {
		if split.Unreadable(err) {
			s.log.Warn("skipping unreadable object", "object", pos, "error", err)
			return s.sink.Retry(ctx, "dead-letter object", func() error { return s.sink.Reject(ctx, pos, nil, err) })
		}
		return err
	}
	return s.sink.PublishWait(ctx, batch)
}

// get downloads an object and decompresses it. Content errors are errPermanent; network
// and service errors are transient.
func (s *Source) get(ctx context.Context, o object) ([]byte, string, error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)})
	if err != nil {
		var nsk *s3types.NoSuchKey
		var nsb *s3types.NoSuchBucket
		if errors.As(err, &nsk) || errors.As(err, &nsb) {
			return nil, "", errPermanent{fmt.Errorf("object not found: %w", err)}
		}
		return nil, "", fmt.Errorf("get s3://%s/%s: %w", o.Bucket, o.Key, err)
	}
	defer out.Body.Close()
	// The download is read whole before decompressing, so a broken connection is a
	// transient error and not mistaken for a truncated file.
	raw, err := io.ReadAll(io.LimitReader(out.Body, s.limits.MaxContainerBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("read s3://%s/%s: %w", o.Bucket, o.Key, err)
	}
	if int64(len(raw)) > s.limits.MaxContainerBytes {
		return nil, "", errPermanent{fmt.Errorf("%w: object exceeds %d bytes", split.ErrTooLarge, s.limits.MaxContainerBytes)}
	}
	data, err := split.ReadAll(bytes.NewReader(raw), s.limits)
	if err != nil {
		return nil, "", errPermanent{err}
	}
	return data, aws.ToString(out.ETag), nil
}

// keepInvisible extends the message's visibility every half period until stop is called.
func (s *Source) keepInvisible(ctx context.Context, m sqstypes.Message) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.VisibilityTimeout / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.changeVisibility(ctx, m, s.cfg.VisibilityTimeout)
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (s *Source) changeVisibility(ctx context.Context, m sqstypes.Message, d time.Duration) {
	_, err := s.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(s.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: int32(d / time.Second),
	})
	if err != nil && ctx.Err() == nil {
		s.sink.CountError(ctx)
		s.log.Warn("sqs change visibility failed", "message_id", aws.ToString(m.MessageId), "error", err)
	}
}

// delete removes a processed message and then the cursors of its objects. A delete that
// keeps failing (the receipt expired and someone else holds the message) is left: the
// redelivered message re-publishes the same ids, which JetStream and consumers drop.
func (s *Source) delete(ctx context.Context, m sqstypes.Message, objs []object) {
	var err error
	for attempt, wait := 0, 100*time.Millisecond; attempt < 5; attempt, wait = attempt+1, 2*wait {
		_, err = s.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle})
		if err == nil || ctx.Err() != nil {
			break
		}
		s.sink.CountError(ctx)
		sleep(ctx, wait)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("sqs delete failed, message will be redelivered", "message_id", aws.ToString(m.MessageId), "error", err)
		}
		return
	}
	for _, o := range objs {
		if err := s.cursors.Delete(ctx, "s3://"+o.Bucket+"/"+o.Key); err != nil {
			s.log.Warn("cursor delete failed", "error", err)
		}
	}
}

// watchBacklog records the queue's approximate number of waiting messages.
func (s *Source) watchBacklog(ctx context.Context) {
	for {
		out, err := s.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(s.cfg.QueueURL),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages},
		})
		if err == nil {
			if n, err := strconv.ParseInt(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], 10, 64); err == nil {
				s.sink.ObserveBacklog(ctx, n, "messages")
			}
		} else if ctx.Err() == nil {
			s.log.Debug("sqs queue attributes failed", "error", err)
		}
		if !sleep(ctx, s.cfg.BacklogInterval) {
			return
		}
	}
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

func truncate(b []byte) []byte {
	const maxKept = 64 << 10
	if len(b) > maxKept {
		b = b[:maxKept]
	}
	return b
}
