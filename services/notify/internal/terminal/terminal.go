// Package terminal renders findings as text for a person reading a terminal.
package terminal

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
)

// Printer writes one block of text per finding. It is safe for concurrent use.
type Printer struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a Printer writing to w.
func New(w io.Writer) *Printer { return &Printer{w: w} }

// Print writes f.
func (p *Printer) Print(f *events.Finding) error {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s — %s\n", strings.ToUpper(f.Severity.Label()), f.Detector, f.Title)
	fmt.Fprintf(&b, "  identity: %s (%s)", f.GetIdentity().GetId(), f.GetIdentity().GetKind().Label())
	if f.Owner != "" {
		fmt.Fprintf(&b, "  owner: %s", f.Owner)
	}
	b.WriteByte('\n')
	if f.GetCredential().GetId() != "" {
		fmt.Fprintf(&b, "  credential: %s\n", f.GetCredential().GetId())
	}
	fmt.Fprintf(&b, "  when: %s  finding: %s\n", time.Unix(0, f.TimeUnixNano).UTC().Format(time.RFC3339), f.Id)
	if f.Summary != "" {
		fmt.Fprintf(&b, "  %s\n", f.Summary)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := io.WriteString(p.w, b.String())
	return err
}

// Destination prints notices: the finding when it is new, one line for a repeat or a
// triage change.
type Destination struct {
	name string
	p    *Printer
}

var _ dest.Destination = (*Destination)(nil)

// NewDestination prints to p.
func NewDestination(name string, p *Printer) *Destination { return &Destination{name: name, p: p} }

func (d *Destination) Name() string    { return d.name }
func (d *Destination) Kind() dest.Kind { return dest.Terminal }
func (d *Destination) Close() error    { return nil }

// Deliver prints n.
func (d *Destination) Deliver(_ context.Context, n dest.Notice) (dest.Receipt, error) {
	if n.Kind == dest.New {
		return dest.Receipt{}, d.p.Print(n.Finding)
	}
	line := fmt.Sprintf("[%s] finding %s (%s)", strings.ToUpper(n.Status.Label()), n.Finding.GetId(), n.Finding.GetTitle())
	if n.Kind == dest.Repeat {
		line = fmt.Sprintf("[SEEN %d×] finding %s (%s)", n.Seen, n.Finding.GetId(), n.Finding.GetTitle())
	}
	if n.Status.By != "" && n.Kind == dest.StatusChange {
		line += " by " + n.Status.By
	}
	if n.Status.Reason != "" && n.Kind == dest.StatusChange {
		line += ": " + n.Status.Reason
	}
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	_, err := io.WriteString(d.p.w, line+"\n")
	return dest.Receipt{}, err
}
