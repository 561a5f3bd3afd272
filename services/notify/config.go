package notify

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/api"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/kafkasink"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ledger"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/pagerduty"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/route"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/slack"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/webhook"
)

// Config configures the notify service. Destinations and routes come from the file only.
type Config struct {
	// Terminal prints every finding to the terminal writer (Deps.Out), as an implicit
	// destination named "terminal" that every finding goes to.
	Terminal bool `yaml:"terminal" env:"TERMINAL"`
	// Destinations are the places findings can go, by name.
	Destinations []DestinationConfig `yaml:"destinations"`
	// Routes say which findings go to which destinations.
	Routes []route.Route `yaml:"routes"`
	// FoldWindow: repeats of a finding within this window of the last update become one
	// update of the alert already raised.
	FoldWindow time.Duration `yaml:"fold_window" env:"FOLD_WINDOW"`
	// Workers handle this many findings at once.
	Workers int `yaml:"workers" env:"WORKERS"`
	// QueueSize bounds the deliveries waiting for each destination.
	QueueSize int `yaml:"queue_size" env:"QUEUE_SIZE"`
	// RetryDelay is how long JetStream waits before redelivering a finding a destination
	// could not take.
	RetryDelay time.Duration `yaml:"retry_delay" env:"RETRY_DELAY"`
	// SlackPerSecond paces messages per Slack channel.
	SlackPerSecond float64 `yaml:"slack_per_second" env:"SLACK_PER_SECOND"`
	// HTTP is the outbound HTTP policy (https only, no redirects, public addresses only).
	HTTP safehttp.Config `yaml:"http"`
	// LinkBaseURL, when set, links alerts to <link_base_url><finding id>.
	LinkBaseURL string `yaml:"link_base_url" env:"LINK_BASE_URL"`
	// ForwardEvents sends every normalized event to a Kafka destination as OCSF API Activity
	// and Account Change (opt-in: a separate durable consumer of NHI_EVENTS).
	ForwardEvents ForwardEvents `yaml:"forward_events"`
	// API serves the triage HTTP API when Listen is set.
	API api.Config `yaml:"api" envPrefix:"API_"`
}

// ForwardEvents configures event forwarding.
type ForwardEvents struct {
	// Destination names a kafka destination; empty disables forwarding.
	Destination string `yaml:"destination" env:"DESTINATION"`
}

// DestinationConfig is one destination: its name, type and the section of that type.
type DestinationConfig struct {
	Name      string           `yaml:"name"`
	Type      string           `yaml:"type"`
	Slack     slack.Config     `yaml:"slack"`
	PagerDuty pagerduty.Config `yaml:"pagerduty"`
	Kafka     kafkasink.Config `yaml:"kafka"`
	Webhook   webhook.Config   `yaml:"webhook"`
}

// TerminalDestination is the name of the implicit terminal destination.
const TerminalDestination = "terminal"

// DefaultConfig prints findings to the terminal.
func DefaultConfig() Config {
	return Config{
		Terminal:       true,
		FoldWindow:     10 * time.Minute,
		Workers:        4,
		QueueSize:      64,
		RetryDelay:     10 * time.Second,
		SlackPerSecond: 1,
		HTTP:           safehttp.DefaultConfig(),
	}
}

// Validate reports the first setting that cannot work. It does not read secret files;
// New does.
func (c Config) Validate() error {
	switch {
	case c.FoldWindow < 0:
		return errors.New("notify.fold_window must not be negative")
	case c.Workers < 1 || c.Workers > 256:
		return fmt.Errorf("notify.workers must be 1 to 256, got %d", c.Workers)
	case c.QueueSize < 1:
		return errors.New("notify.queue_size must be positive")
	case c.RetryDelay <= 0:
		return errors.New("notify.retry_delay must be positive")
	case c.SlackPerSecond <= 0 || c.SlackPerSecond > 50:
		return errors.New("notify.slack_per_second must be in (0, 50]")
	}
	if err := c.HTTP.Validate(); err != nil {
		return fmt.Errorf("notify.%w", err)
	}
	if c.LinkBaseURL != "" {
		if u, err := url.Parse(c.LinkBaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("notify.link_base_url must be an http(s) URL")
		}
	}
	names := map[string]string{}
	if c.Terminal {
		names[TerminalDestination] = string(dest.Terminal)
	}
	for i, d := range c.Destinations {
		if !ledger.DestinationName.MatchString(d.Name) {
			return fmt.Errorf("notify.destinations[%d]: name %q must be lower-case letters, digits, - or _", i, d.Name)
		}
		if _, dup := names[d.Name]; dup {
			return fmt.Errorf("notify.destinations: %q is defined twice (terminal: true defines %q)", d.Name, TerminalDestination)
		}
		names[d.Name] = d.Type
		var err error
		switch dest.Kind(d.Type) {
		case dest.Slack:
			err = d.Slack.Validate()
		case dest.PagerDuty:
			err = d.PagerDuty.Validate()
		case dest.Kafka:
			err = d.Kafka.Validate()
		case dest.Webhook:
			err = d.Webhook.Validate()
		case dest.Terminal:
		default:
			err = fmt.Errorf("unknown type %q (slack, pagerduty, kafka, webhook, terminal)", d.Type)
		}
		if err != nil {
			return fmt.Errorf("notify.destinations %s: %w", d.Name, err)
		}
	}
	if _, err := route.New(c.Routes, func(n string) bool { _, ok := names[n]; return ok }); err != nil {
		return fmt.Errorf("notify.routes: %w", err)
	}
	if fe := c.ForwardEvents.Destination; fe != "" && names[fe] != string(dest.Kafka) {
		return fmt.Errorf("notify.forward_events.destination %q must name a kafka destination", fe)
	}
	return c.API.Validate()
}
