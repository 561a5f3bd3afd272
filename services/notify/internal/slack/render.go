package slack

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/refs"
)

// Message is a Slack message: the notification text and the Block Kit blocks.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks"`
}

// Block is a Block Kit layout block: header, section, context, divider or actions.
type Block struct {
	Type     string    `json:"type"`
	Text     *Text     `json:"text,omitempty"`
	Fields   []Text    `json:"fields,omitempty"`
	Elements []Element `json:"elements,omitempty"`
}

// Text is a Block Kit text object.
type Text struct {
	Type  string `json:"type"` // plain_text or mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// Element is a context element (a text object) or a link button.
type Element struct {
	Type     string `json:"type"`
	Text     any    `json:"text,omitempty"`
	URL      string `json:"url,omitempty"`
	ActionID string `json:"action_id,omitempty"`
}

// Block Kit limits (api.slack.com/reference/block-kit/blocks).
const (
	maxHeader    = 150
	maxSection   = 3000
	maxField     = 2000
	maxFields    = 10
	maxText      = 3000
	maxEvidence  = 5
	maxFieldList = 8
)

var severityEmoji = map[events.Severity]string{
	events.Severity_SEVERITY_CRITICAL: ":rotating_light:",
	events.Severity_SEVERITY_HIGH:     ":red_circle:",
	events.Severity_SEVERITY_MEDIUM:   ":large_orange_circle:",
	events.Severity_SEVERITY_LOW:      ":large_yellow_circle:",
	events.Severity_SEVERITY_INFO:     ":information_source:",
}

// Render builds the message for a notice: what happened, who (identity, credential, owner),
// the evidence, why it matters (OWASP NHI, MITRE ATT&CK), what to do next, and the triage
// status. Every value that comes from a log is escaped, so a crafted identity or user agent
// cannot mention @channel or inject links.
func Render(n dest.Notice) Message {
	f := n.Finding
	sev := strings.ToUpper(f.Severity.Label())
	if sev == "" {
		sev = "UNKNOWN"
	}
	title := f.Title
	if title == "" {
		title = f.Detector
	}
	status := n.Status.Label()
	emoji := severityEmoji[f.Severity]
	if emoji == "" {
		emoji = ":grey_question:"
	}
	headerPrefix := emoji + " " + sev
	switch status {
	case "resolved":
		headerPrefix = ":white_check_mark: RESOLVED"
	case "suppressed":
		headerPrefix = ":no_bell: SUPPRESSED"
	}
	var blocks []Block
	blocks = append(blocks, Block{Type: "header", Text: &Text{Type: "plain_text", Text: dest.Truncate(headerPrefix+" · "+f.Detector+": "+title, maxHeader), Emoji: true}})
	if f.Summary != "" {
		blocks = append(blocks, section(dest.Truncate(esc(f.Summary), maxSection)))
	}

	id := f.GetIdentity()
	identity := code(id.GetId())
	if k := id.GetKind().Label(); k != "" {
		identity += " (" + esc(k) + ")"
	}
	owner := "_none: an NHI without an owner is itself a risk_"
	if f.Owner != "" {
		owner = esc(f.Owner)
		if f.Team != "" {
			owner += " · team " + esc(f.Team)
		}
	} else if f.Team != "" {
		owner = "team " + esc(f.Team)
	}
	fields := []Text{
		mrkdwn("*Identity*\n" + identity),
		mrkdwn("*Owner*\n" + owner),
	}
	if c := f.GetCredential().GetId(); c != "" {
		fields = append(fields, mrkdwn("*Credential*\n"+code(c)))
	}
	if where := joinNonEmpty(" · ", f.Provider.Label(), f.Account, f.Region); where != "" {
		fields = append(fields, mrkdwn("*Where*\n"+esc(where)))
	}
	if f.TimeUnixNano > 0 {
		fields = append(fields, mrkdwn("*When*\n"+slackDate(time.Unix(0, f.TimeUnixNano))))
	}
	if f.Grantee != "" && f.Grantee != id.GetId() {
		fields = append(fields, mrkdwn("*Grantee*\n"+code(f.Grantee)))
	}
	if len(f.PermissionsAdded) > 0 {
		fields = append(fields, mrkdwn("*Permissions gained*\n"+codeList(f.PermissionsAdded)))
	}
	fields = append(fields, mrkdwn("*Status*\n"+statusText(n.Status)))
	for i := range fields {
		fields[i].Text = dest.Truncate(fields[i].Text, maxField)
	}
	if len(fields) > maxFields {
		fields = fields[:maxFields]
	}
	blocks = append(blocks, Block{Type: "section", Fields: fields})

	if ev := evidenceText(f.Evidence); ev != "" {
		blocks = append(blocks, section(dest.Truncate("*Evidence*\n"+ev, maxSection)))
	}
	if why := whyText(f); why != "" {
		blocks = append(blocks, section(dest.Truncate("*Why it matters*\n"+why, maxSection)))
	}
	next := f.Recommendation
	if next == "" {
		next = "Confirm with the owner that this was expected; if not, revoke the credential and review what the identity did."
	}
	next = esc(next)
	if status == "open" || status == "acknowledged" {
		next += fmt.Sprintf("\nTriage: `nhiwatch findings ack %s -reason …` · `resolve` · `suppress -for 7d`", f.Id)
	}
	blocks = append(blocks, section(dest.Truncate("*What to do next*\n"+next, maxSection)))
	if n.Link != "" {
		blocks = append(blocks, Block{Type: "actions", Elements: []Element{{
			Type: "button", Text: Text{Type: "plain_text", Text: "Open finding"}, URL: n.Link, ActionID: "open_finding",
		}}})
	}
	ctx := fmt.Sprintf("finding `%s` · nhiwatch", esc(f.Id))
	if n.Seen > 1 {
		ctx += fmt.Sprintf(" · seen %d times, last %s", n.Seen, slackDate(n.LastSeen))
	}
	blocks = append(blocks, Block{Type: "context", Elements: []Element{{Type: "mrkdwn", Text: ctx}}})

	text := fmt.Sprintf("[%s] %s: %s (%s)", sev, f.Detector, title, id.GetId())
	if status != "open" {
		text = fmt.Sprintf("[%s] %s", strings.ToUpper(status), text)
	}
	return Message{Text: dest.Truncate(esc(text), maxText), Blocks: blocks}
}

func statusText(s dest.Status) string {
	var b strings.Builder
	switch s.Label() {
	case "open":
		return ":red_circle: Open"
	case "acknowledged":
		b.WriteString(":eyes: Acknowledged")
	case "resolved":
		b.WriteString(":white_check_mark: Resolved")
	case "suppressed":
		b.WriteString(":no_bell: Suppressed")
		if !s.Until.IsZero() {
			b.WriteString(" until " + slackDate(s.Until))
		}
	default:
		b.WriteString(esc(s.Status))
	}
	if s.By != "" {
		b.WriteString(" by " + esc(s.By))
	}
	if s.Reason != "" {
		b.WriteString(": " + esc(s.Reason))
	}
	return b.String()
}

func evidenceText(ev []*events.Evidence) string {
	var lines []string
	for i, e := range ev {
		if i == maxEvidence {
			lines = append(lines, fmt.Sprintf("… and %d more", len(ev)-maxEvidence))
			break
		}
		var parts []string
		if e.TimeUnixNano > 0 {
			parts = append(parts, time.Unix(0, e.TimeUnixNano).UTC().Format("2006-01-02 15:04:05Z"))
		}
		if e.Action != "" {
			a := code(e.Action)
			if e.Permission != "" && e.Permission != e.Action {
				a += " (" + esc(e.Permission) + ")"
			}
			parts = append(parts, a)
		}
		if e.Ip != "" {
			parts = append(parts, "from "+esc(e.Ip))
		}
		if e.Region != "" {
			parts = append(parts, "in "+esc(e.Region))
		}
		if e.UserAgent != "" {
			parts = append(parts, esc(dest.Truncate(e.UserAgent, 80)))
		}
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, esc(k)+"="+code(e.Fields[k]))
		}
		if len(parts) > 0 {
			lines = append(lines, "• "+strings.Join(parts, " · "))
		}
	}
	return strings.Join(lines, "\n")
}

func whyText(f *events.Finding) string {
	var parts []string
	for _, id := range f.OwaspNhi {
		parts = append(parts, link(refs.OWASPURL(id), "OWASP "+refs.Label(id)))
	}
	for _, id := range f.MitreAttack {
		parts = append(parts, link(refs.MITREURL(id), "MITRE ATT&CK "+refs.Label(id)))
	}
	return strings.Join(parts, "\n")
}

// slackDate renders t in the reader's time zone, with UTC as the fallback text.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time_secs}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04:05 UTC"))
}

func section(s string) Block { return Block{Type: "section", Text: &Text{Type: "mrkdwn", Text: s}} }

func mrkdwn(s string) Text { return Text{Type: "mrkdwn", Text: s} }

// esc escapes the three characters Slack's mrkdwn gives meaning to (control sequences like
// <!channel> and links), as Slack's formatting guide asks.
func esc(s string) string { return escaper.Replace(s) }

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// code renders s as inline code; backticks inside would end the span early.
func code(s string) string {
	if s == "" {
		return "_unknown_"
	}
	return "`" + esc(strings.ReplaceAll(s, "`", "'")) + "`"
}

func codeList(xs []string) string {
	var out []string
	for i, x := range xs {
		if i == maxFieldList {
			out = append(out, fmt.Sprintf("+%d more", len(xs)-maxFieldList))
			break
		}
		out = append(out, code(x))
	}
	return strings.Join(out, " ")
}

// link renders a link to a URL nhiwatch built (never one from a log).
func link(url, text string) string { return "<" + url + "|" + esc(text) + ">" }

func joinNonEmpty(sep string, xs ...string) string {
	var out []string
	for _, x := range xs {
		if x != "" {
			out = append(out, x)
		}
	}
	return strings.Join(out, sep)
}

// Preview renders a message as plain text, roughly as Slack shows it: for docs, logs of
// the terminal destination and tests.
func Preview(m Message) string {
	var b strings.Builder
	for _, bl := range m.Blocks {
		switch bl.Type {
		case "header":
			b.WriteString(bl.Text.Text + "\n")
		case "section":
			if bl.Text != nil {
				b.WriteString(plain(bl.Text.Text) + "\n")
			}
			for _, f := range bl.Fields {
				b.WriteString(strings.Replace(plain(f.Text), "\n", ": ", 1) + "\n")
			}
		case "actions":
			for _, e := range bl.Elements {
				if e.URL != "" {
					b.WriteString("[Open finding] " + e.URL + "\n")
				}
			}
		case "context":
			for _, e := range bl.Elements {
				if s, ok := e.Text.(string); ok {
					b.WriteString(plain(s) + "\n")
				}
			}
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// boldLabel is the "*Label*" that starts a section or field.
var boldLabel = regexp.MustCompile(`(?m)^\*([^*\n]+)\*`)

// plain turns mrkdwn into text: dates and links show their fallback text and URL.
func plain(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		b.WriteString(s[:i])
		inner := s[i+1 : i+j]
		if target, label, ok := strings.Cut(inner, "|"); ok {
			if strings.HasPrefix(target, "!date") {
				b.WriteString(label)
			} else {
				b.WriteString(label + " (" + target + ")")
			}
		} else {
			b.WriteString(inner)
		}
		s = s[i+j+1:]
	}
	b.WriteString(s)
	out := boldLabel.ReplaceAllString(b.String(), "$1")
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(out)
}
