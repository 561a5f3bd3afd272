package loadgen

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

const testdata = "../../../testdata"

func templates(t testing.TB) *Templates {
	t.Helper()
	tp, err := LoadTemplates(testdata)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestRecordsNormalize generates records of every provider and demands that each is valid
// JSON that normalize turns into an event of one of the generated identities, with an id of
// its own and, for the triggers, what makes the detectors fire.
func TestRecordsNormalize(t *testing.T) {
	tp := templates(t)
	g := tp.NewGenerator(Spec{Seed: 7, Identities: 300, Mix: DefaultMix, TriggerShare: 0.05, Cluster: "bench"})
	n := normalize.NewNormalizer()
	ids := map[string]bool{}
	identities := map[string]bool{}
	triggers := map[string]int{}
	formats := map[string]string{AWS: "cloudtrail", GCP: "gcp", K8s: "k8s"}
	for i := 0; i < 6000; i++ {
		p := g.Provider()
		rec, trig := g.Next(nil, p)
		if !json.Valid(rec) {
			t.Fatalf("record %d (%s) is not JSON: %s", i, p, rec)
		}
		ev, err := n.Normalize(normalize.Input{Data: rec, Format: formats[p], Cluster: "bench", Source: "bench"})
		if err != nil {
			t.Fatalf("record %d (%s): %v\n%s", i, p, err, rec)
		}
		if ids[ev.Id] {
			t.Fatalf("record %d: event id %s repeats", i, ev.Id)
		}
		ids[ev.Id] = true
		if !strings.Contains(ev.Identity.GetId(), "bench-") {
			t.Fatalf("record %d (%s): identity %q is not a generated one\n%s", i, p, ev.Identity.GetId(), rec)
		}
		identities[ev.Identity.GetId()] = true
		if trig == nil {
			if ip := ev.Network.GetIp(); ip != "" && !strings.HasPrefix(ip, "10.") {
				t.Fatalf("record %d (%s): ordinary record from %s, outside the home networks", i, p, ip)
			}
			if len(ev.GrantChanges) > 0 {
				t.Fatalf("record %d (%s): an ordinary record changes grants: %v", i, p, ev.GrantChanges)
			}
			continue
		}
		triggers[trig.Kind]++
		if trig.EventID != ev.Id {
			t.Errorf("trigger %s: event id %q, normalize says %q", trig.Kind, trig.EventID, ev.Id)
		}
		switch trig.Kind {
		case TriggerGrant:
			if len(ev.GrantChanges) != 1 || !strings.Contains(ev.GrantChanges[0].Grantee, "bench-new-user-") || !strings.HasSuffix(ev.GrantChanges[0].Grant, "AdministratorAccess") {
				t.Errorf("grant trigger: grant changes %v", ev.GrantChanges)
			}
		case TriggerBoundary, TriggerK8sAddress:
			addr, err := netip.ParseAddr(ev.Network.GetIp())
			if err != nil || addr.IsPrivate() {
				t.Errorf("%s trigger from %q, want a public address", trig.Kind, ev.Network.GetIp())
			}
			if trig.Kind == TriggerBoundary && !strings.Contains(ev.Identity.Id, ":role/bench-role-") {
				t.Errorf("boundary trigger by %s, want a catalogued role", ev.Identity.Id)
			}
			if trig.Kind == TriggerK8sAddress && ev.Identity.Kind != events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT {
				t.Errorf("k8s trigger by %s (%s), want a service account", ev.Identity.Id, ev.Identity.Kind)
			}
		}
	}
	for _, k := range []string{TriggerGrant, TriggerBoundary, TriggerK8sAddress} {
		if triggers[k] == 0 {
			t.Errorf("no %s trigger in 6000 records", k)
		}
	}
	if len(identities) < 250 || len(identities) > 300 {
		t.Errorf("%d distinct identities, want about 300", len(identities))
	}
	if size := tp.MeanSize(DefaultMix); size < 1000 || size > 2500 {
		t.Errorf("mean record size %.0f B, want about 1.5 KB", size)
	}
	t.Logf("%s; default mix %.0f B per record; %d identities; triggers %v", tp.Describe(), tp.MeanSize(DefaultMix), len(identities), triggers)
}

func BenchmarkGenerate(b *testing.B) {
	tp := templates(b)
	g := tp.NewGenerator(Spec{Seed: 7, Identities: 100000, Mix: DefaultMix, TriggerShare: 0.002, Cluster: "bench"})
	var buf []byte
	var bytes int64
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = g.Next(buf[:0], g.Provider())
		bytes += int64(len(buf))
	}
	b.SetBytes(bytes / int64(b.N))
}
