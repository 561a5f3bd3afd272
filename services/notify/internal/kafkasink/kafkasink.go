// Package kafkasink forwards findings (OCSF Detection Finding) and, when asked, normalized
// events (OCSF API Activity and Account Change) to Kafka topics for a SIEM. Messages are
// keyed by finding or event id, so every version of a finding lands on one partition in
// order, and a write returns only once every in-sync replica has the message
// (RequiredAcks: RequireAll): a finding acknowledged on JetStream is durable in Kafka.
package kafkasink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
)

// Config configures a Kafka cluster and the findings topic.
type Config struct {
	Brokers []string `yaml:"brokers"`
	// Topic receives findings.
	Topic string `yaml:"topic"`
	// EventsTopic receives forwarded events (notify.forward_events); defaults to Topic.
	EventsTopic string     `yaml:"events_topic"`
	ClientID    string     `yaml:"client_id"`
	TLS         TLSConfig  `yaml:"tls"`
	SASL        SASLConfig `yaml:"sasl"`
	// WriteTimeout bounds one write, acks included.
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// TLSConfig enables TLS to the brokers.
type TLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile holds the brokers' CA certificates (PEM); empty uses the system roots.
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// SASLConfig authenticates to the brokers.
type SASLConfig struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512; empty disables SASL.
	Mechanism string     `yaml:"mechanism"`
	Username  string     `yaml:"username"`
	Password  secret.Ref `yaml:"password"`
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka: brokers are required")
	case c.Topic == "":
		return errors.New("kafka: topic is required")
	case c.SASL.Mechanism != "" && c.SASL.Username == "":
		return errors.New("kafka: sasl needs a username")
	case c.SASL.Mechanism == "plain" && !c.TLS.Enabled:
		return errors.New("kafka: sasl plain sends the password in clear; enable tls")
	}
	switch c.SASL.Mechanism {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	default:
		return fmt.Errorf("kafka: unknown sasl mechanism %q (plain, scram-sha-256, scram-sha-512)", c.SASL.Mechanism)
	}
	if c.SASL.Mechanism != "" {
		return c.SASL.Password.Validate("kafka sasl password")
	}
	return nil
}

// Destination is a Kafka cluster.
type Destination struct {
	name        string
	w           *kafka.Writer
	topic       string
	eventsTopic string
	product     ocsf.Product
	now         func() time.Time
}

var _ dest.Destination = (*Destination)(nil)

// New builds the writer; it connects on the first write.
func New(name string, c Config, product ocsf.Product) (*Destination, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tr := &kafka.Transport{ClientID: c.ClientID, DialTimeout: 10 * time.Second}
	if tr.ClientID == "" {
		tr.ClientID = "nhiwatch-notify"
	}
	if c.TLS.Enabled {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka %s: ca_file: %w", name, err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka %s: ca_file holds no PEM certificate", name)
			}
		}
		tr.TLS = cfg
	}
	if c.SASL.Mechanism != "" {
		pw, err := c.SASL.Password.Load("kafka sasl password")
		if err != nil {
			return nil, err
		}
		var mech sasl.Mechanism
		switch c.SASL.Mechanism {
		case "plain":
			mech = plain.Mechanism{Username: c.SASL.Username, Password: pw.Reveal()}
		case "scram-sha-256":
			mech, err = scram.Mechanism(scram.SHA256, c.SASL.Username, pw.Reveal())
		case "scram-sha-512":
			mech, err = scram.Mechanism(scram.SHA512, c.SASL.Username, pw.Reveal())
		}
		if err != nil {
			return nil, fmt.Errorf("kafka %s: sasl: %w", name, err)
		}
		tr.SASL = mech
	}
	timeout := c.WriteTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := &Destination{
		name: name, topic: c.Topic, eventsTopic: c.EventsTopic, product: product, now: time.Now,
		w: &kafka.Writer{
			Addr:         kafka.TCP(c.Brokers...),
			Balancer:     &kafka.Hash{},
			RequiredAcks: kafka.RequireAll,
			MaxAttempts:  3,
			BatchTimeout: 5 * time.Millisecond,
			BatchSize:    500,
			WriteTimeout: timeout,
			ReadTimeout:  timeout,
			Transport:    tr,
		},
	}
	if d.eventsTopic == "" {
		d.eventsTopic = d.topic
	}
	return d, nil
}

func (d *Destination) Name() string    { return d.name }
func (d *Destination) Kind() dest.Kind { return dest.Kafka }
func (d *Destination) Close() error    { return d.w.Close() }

// Deliver writes the finding as OCSF JSON, keyed by the finding id.
func (d *Destination) Deliver(ctx context.Context, n dest.Notice) (dest.Receipt, error) {
	doc, err := ocsf.Notice(d.product, n, d.now())
	if err != nil {
		return dest.Receipt{}, dest.Permanent(err)
	}
	return dest.Receipt{}, d.write(ctx, []kafka.Message{message(d.topic, n.Finding.GetId(), 2004, doc)})
}

// Doc is one OCSF document to forward.
type Doc struct {
	Key      string
	ClassUID int
	JSON     []byte
}

// WriteEvents writes event documents to the events topic in one batch.
func (d *Destination) WriteEvents(ctx context.Context, docs []Doc) error {
	msgs := make([]kafka.Message, len(docs))
	for i, doc := range docs {
		msgs[i] = message(d.eventsTopic, doc.Key, doc.ClassUID, doc.JSON)
	}
	return d.write(ctx, msgs)
}

func message(topic, key string, class int, value []byte) kafka.Message {
	return kafka.Message{
		Topic: topic,
		Key:   []byte(key),
		Value: value,
		Headers: []kafka.Header{
			{Key: "content-type", Value: []byte("application/json")},
			{Key: "ocsf_class_uid", Value: []byte(strconv.Itoa(class))},
			{Key: "ocsf_version", Value: []byte(ocsf.Version)},
		},
	}
}

func (d *Destination) write(ctx context.Context, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	err := d.w.WriteMessages(ctx, msgs...)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("kafka %s: %w", d.name, firstError(err))
	if permanent(err) {
		return dest.Permanent(err)
	}
	return err
}

// firstError unpacks kafka.WriteErrors (one error per message) into its first failure.
func firstError(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return fmt.Errorf("%d of %d messages failed: %w", we.Count(), len(we), e)
			}
		}
	}
	return err
}

// permanent reports the broker answers no retry can change: the message is too big, or the
// topic name is invalid.
func permanent(err error) bool {
	for _, code := range []kafka.Error{kafka.MessageSizeTooLarge, kafka.InvalidTopic, kafka.RecordListTooLarge, kafka.InvalidRecord} {
		if errors.Is(err, code) {
			return true
		}
	}
	return strings.Contains(err.Error(), "message too large")
}
