package state

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestActivity(t *testing.T) {
	var a Activity
	const gap = 3600
	for _, tm := range []uint32{1000, 1500, 100000, 300000, 200000, 500000, 900000} {
		a.Add(tm, gap)
	}
	if a.N != MaxSpans {
		t.Fatalf("N = %d, want %d", a.N, MaxSpans)
	}
	// The largest gaps survive: the last activity before 900000 is 500000.
	if prev, inside, ok := a.Before(899999); !ok || inside || prev != 500000 {
		t.Errorf("Before = %d %v %v", prev, inside, ok)
	}
	if _, inside, _ := a.Before(1200); !inside {
		t.Error("1200 lies in the first span")
	}
	if _, _, ok := a.Before(10); ok {
		t.Error("nothing before 10")
	}
	// Filling the gap between two spans merges them.
	var b Activity
	b.Add(0, gap)
	b.Add(7000, gap)
	b.Add(3500, gap)
	if b.N != 1 || b.Spans[0] != (Span{0, 7000}) {
		t.Errorf("spans = %v", b.Spans[:b.N])
	}
}

func TestCodecRoundTrip(t *testing.T) {
	s := &Identity{Seq: 1 << 40, Created: 1_700_000_000, Events: 77, Kind: 4, Sat: SatAgents, Rule: -1}
	s.Activity.Add(1_700_000_000, 3600)
	s.Activity.Add(1_710_000_000, 3600)
	s.LearnNet(4<<56 | 0xc0a801)
	s.LearnRegion(1)
	s.LearnAgent(2)
	s.LearnCluster(3)
	s.SetGrant(99, 4)
	c := s.Cred(12345, true)
	c.Created = 1_600_000_000
	c.Activity.Add(1_700_000_500, 3600)
	s.Fire(42)
	got, err := Decode(s.Encode(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got, cmp.AllowUnexported(Identity{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for i := 0; i < len(s.Encode(nil)); i++ {
		if _, err := Decode(s.Encode(nil)[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
}

func TestApplyIdempotent(t *testing.T) {
	s := &Identity{}
	if !s.Apply(5) || !s.Apply(5) {
		t.Fatal("events of the message being applied must apply")
	}
	restored, _ := Decode(s.Encode(nil))
	if restored.Apply(5) || restored.Apply(4) {
		t.Fatal("a redelivered message must not apply to a state persisted after it")
	}
	if !restored.Apply(6) {
		t.Fatal("the next message must apply")
	}
}

func FuzzDecode(f *testing.F) {
	s := &Identity{Seq: 9, Events: 3}
	s.Activity.Add(100, 10)
	s.Cred(7, true)
	f.Add(s.Encode(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Decode(b)
		if err != nil {
			return
		}
		if _, err := Decode(st.Encode(nil)); err != nil {
			t.Fatalf("re-encoding a decoded state fails: %v", err)
		}
	})
}
