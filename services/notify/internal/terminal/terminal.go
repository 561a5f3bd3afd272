// Package terminal renders findings as text for a person reading a terminal.
package terminal

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
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
