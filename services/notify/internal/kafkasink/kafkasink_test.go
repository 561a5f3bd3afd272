package kafkasink_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/kafkasink"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf/ocsftest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
)

var product = ocsf.Product{Name: "nhiwatch", Vendor: "nhiwatch", Version: "test"}

// Cluster starts an in-process Kafka with the topics.
func cluster(t *testing.T, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consume reads n records from topic.
func consume(t *testing.T, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(out), n, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestFindingsAndEventsReachKafka(t *testing.T) {
	c := cluster(t, "findings", "events")
	d, err := kafkasink.New("siem", kafkasink.Config{Brokers: c.ListenAddrs(), Topic: "findings", EventsTopic: "events"}, product)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	f := testfixture.Finding()
	for _, n := range []dest.Notice{
		{Kind: dest.New, Finding: f, Revision: 1},
		{Kind: dest.StatusChange, Finding: f, Status: dest.Status{Status: "resolved", By: "alice"}, Revision: 2},
	} {
		if _, err := d.Deliver(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	var docs []kafkasink.Doc
	for _, ev := range testfixture.Events() {
		js, err := ocsf.EventDocs(product, ev, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			var head struct {
				ClassUID int `json:"class_uid"`
			}
			json.Unmarshal(j, &head)
			docs = append(docs, kafkasink.Doc{Key: ev.Id, ClassUID: head.ClassUID, JSON: j})
		}
	}
	if err := d.WriteEvents(ctx, docs); err != nil {
		t.Fatal(err)
	}

	v := ocsftest.New(t)
	recs := consume(t, c, "findings", 2)
	var activities []int
	for _, r := range recs {
		if string(r.Key) != f.Id {
			t.Errorf("key %q, want the finding id", r.Key)
		}
		if err := v.Validate(r.Value); err != nil {
			t.Errorf("invalid OCSF: %v", err)
		}
		var doc struct {
			ActivityID int `json:"activity_id"`
			StatusID   int `json:"status_id"`
		}
		json.Unmarshal(r.Value, &doc)
		activities = append(activities, doc.ActivityID, doc.StatusID)
	}
	if recs[0].Partition != recs[1].Partition {
		t.Error("two versions of one finding landed on different partitions")
	}
	if want := []int{1, 1, 3, 4}; len(activities) != 4 || activities[0] != want[0] || activities[2] != want[2] || activities[3] != want[3] {
		t.Errorf("activity/status = %v, want create/new then close/resolved", activities)
	}
	for _, r := range consume(t, c, "events", len(docs)) {
		if err := v.Validate(r.Value); err != nil {
			t.Errorf("invalid OCSF event: %v", err)
		}
	}
}

func TestWriteFailsWhenKafkaIsDown(t *testing.T) {
	c := cluster(t, "findings")
	addrs := c.ListenAddrs()
	c.Close()
	d, err := kafkasink.New("siem", kafkasink.Config{Brokers: addrs, Topic: "findings", WriteTimeout: time.Second}, product)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = d.Deliver(ctx, dest.Notice{Kind: dest.New, Finding: testfixture.Finding()})
	if err == nil {
		t.Fatal("write to a stopped cluster succeeded")
	}
	if dest.IsPermanent(err) {
		t.Errorf("an unreachable cluster is permanent: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []kafkasink.Config{
		{Topic: "t"},
		{Brokers: []string{"k:9092"}},
		{Brokers: []string{"k:9092"}, Topic: "t", SASL: kafkasink.SASLConfig{Mechanism: "gssapi", Username: "u"}},
		{Brokers: []string{"k:9092"}, Topic: "t", SASL: kafkasink.SASLConfig{Mechanism: "plain", Username: "u"}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", c)
		}
	}
}
