package usage

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// benchModel is an AWS account of n workload roles, each with an inline policy and two
// managed policies, and n/10 IAM users with a long-term key each.
func benchModel(b *testing.B, n int) *grants.Model {
	b.Helper()
	s := &grants.Snapshot{Scope: "aws:" + acct, Provider: "aws", Format: grants.FormatAWSAuthorizationDetails, Taken: t0.Add(-24 * time.Hour)}
	managed := []string{"ReadOnlyAccess", "AmazonS3ReadOnlyAccess", "AdministratorAccess", "PowerUserAccess"}
	for i := 0; i < n; i++ {
		id := awsID(fmt.Sprintf("role/svc-%05d", i))
		key := grants.InlinePolicyKey(id, "app")
		s.Identities = append(s.Identities, grants.Identity{ID: id, Provider: "aws", Kind: "workload_role", Name: fmt.Sprintf("svc-%05d", i), Account: acct})
		s.Definitions = append(s.Definitions, grants.Definition{Key: key, Name: "app", Kind: grants.KindAWSInlinePolicy, Statements: []grants.Statement{
			{Effect: "Allow", Actions: []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"}, Resources: []string{fmt.Sprintf("arn:aws:dynamodb:us-east-1:%s:table/svc-%05d", acct, i)}},
			{Effect: "Allow", Actions: []string{"kms:Decrypt", "sqs:SendMessage"}, Resources: []string{"*"}},
		}})
		s.Bindings = append(s.Bindings, grants.Binding{Principal: id, Definition: key}, grants.Binding{Principal: id, Definition: grants.AWSManagedPolicyARN(managed[i%len(managed)])})
	}
	for i := 0; i < n/10; i++ {
		id := awsID(fmt.Sprintf("user/ci-%05d", i))
		s.Identities = append(s.Identities, grants.Identity{ID: id, Provider: "aws", Kind: "access_key_user", Name: fmt.Sprintf("ci-%05d", i), Account: acct})
		s.Credentials = append(s.Credentials, grants.Credential{ID: id + "#access_key_1", Identity: id, Active: true, LastRotated: t0.Add(-time.Duration(i%400) * 24 * time.Hour)})
		s.Bindings = append(s.Bindings, grants.Binding{Principal: id, Definition: grants.AWSManagedPolicyARN("PowerUserAccess")})
	}
	m := grants.NewModel()
	if err := m.Import(s); err != nil {
		b.Fatal(err)
	}
	return m
}

// benchEvents are requests of the roles, a tenth of them by sensitive permissions, some
// refused, and one grant change in a thousand.
func benchEvents(n, roles int) []*events.Event {
	perms := []string{"dynamodb:GetItem", "dynamodb:Query", "kms:Decrypt", "sqs:SendMessage", "s3:GetObject", "ec2:DescribeInstances",
		"secretsmanager:GetSecretValue", "iam:PassRole", "dynamodb:DeleteTable", "sts:GetCallerIdentity"}
	out := make([]*events.Event, n)
	for i := range out {
		role := (i * 7919) % roles
		id := awsID(fmt.Sprintf("role/svc-%05d", role))
		res := events.Result_RESULT_ALLOWED
		if i%23 == 0 {
			res = events.Result_RESULT_DENIED
		}
		ev := awsEvent(fmt.Sprintf("e%d", i), id, perms[i%len(perms)], res, t0.Add(time.Duration(i)*time.Second),
			fmt.Sprintf("arn:aws:dynamodb:us-east-1:%s:table/svc-%05d", acct, role))
		ev.Identity.Kind = events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
		ev.Credential = &events.Credential{Id: fmt.Sprintf("aws:session:ASIA%012d", role)}
		if i%1000 == 999 {
			ev.Action.Permission = "iam:AttachRolePolicy"
			ev.GrantChanges = []*events.GrantChange{{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID(fmt.Sprintf("role/svc-%05d", (role+1)%roles)),
				Grant: grants.AWSManagedPolicyARN("IAMFullAccess"), Mechanism: "attach_role_policy"}}
		}
		out[i] = ev
	}
	return out
}

// BenchmarkTrackerObserve is `nhiwatch usage`'s work per event: its use counted, its
// permission evaluated against the grants in force, its grant changes applied.
func BenchmarkTrackerObserve(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		m := benchModel(b, n)
		evs := benchEvents(100_000, n)
		b.Run(fmt.Sprintf("aws_%d_roles", n), func(b *testing.B) {
			tr := NewTracker(m)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ev := evs[i%len(evs)]
				if i >= len(evs) {
					ev = cloneEvent(ev, i) // a new id: counted, not dropped as a duplicate
				}
				tr.Observe(ev)
			}
		})
	}
}

func cloneEvent(ev *events.Event, i int) *events.Event {
	c := proto.Clone(ev).(*events.Event)
	c.Id = fmt.Sprintf("%s/%d", ev.Id, i)
	return c
}

// BenchmarkSyncApplyEvent is the grants sync's work per event in the detect service: its
// activity recorded, the grant entries its request used (for grant_usage), its grant
// changes applied (for the grants table).
func BenchmarkSyncApplyEvent(b *testing.B) {
	conn, _ := chdbtest.Open(b) // applyEvent only needs to know rows are wanted
	srv := eventstest.Start(b)
	for _, n := range []int{1_000, 10_000} {
		evs := benchEvents(100_000, n)
		b.Run(fmt.Sprintf("aws_%d_roles", n), func(b *testing.B) {
			s, err := NewSync(DefaultSyncConfig(), SyncDeps{Model: benchModel(b, n), JS: srv.JS, Log: testLog(),
				Meter: noop.NewMeterProvider().Meter("bench"), ClickHouse: conn})
			if err != nil {
				b.Fatal(err)
			}
			var rows []GrantRow
			var uses []GrantUse
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rows, uses = s.applyEvent(evs[i%len(evs)], rows[:0], uses[:0])
			}
		})
	}
}

// BenchmarkEvaluatePosture is one posture evaluation over a whole inventory.
func BenchmarkEvaluatePosture(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		m := benchModel(b, n)
		act := NewActivities()
		for _, ev := range benchEvents(50_000, n) {
			act.Observe(ev)
		}
		in := PostureInput{Model: m, Activity: act, Now: t0.Add(200 * 24 * time.Hour), ObservedSince: t0.Add(-100 * 24 * time.Hour)}
		b.Run(fmt.Sprintf("aws_%d_roles", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				EvaluatePosture(DefaultPostureConfig(), in)
			}
		})
	}
}
