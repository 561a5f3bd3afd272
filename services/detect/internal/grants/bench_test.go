package grants

import (
	"fmt"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// bigAWSModel is an account of n roles, each with an inline policy of three statements and
// two attached managed policies (one AWS managed, one of four customer managed ones).
func bigAWSModel(b *testing.B, n int) *Model {
	b.Helper()
	s := &Snapshot{Scope: "aws:" + acct, Provider: "aws", Format: FormatAWSAuthorizationDetails, Taken: taken}
	for i := 0; i < 4; i++ {
		arn := fmt.Sprintf("arn:aws:iam::%s:policy/team-%d", acct, i)
		s.Definitions = append(s.Definitions, Definition{Key: arn, Name: arn, Kind: KindAWSManagedPolicy, Statements: []Statement{
			{Effect: "Allow", Actions: []string{"s3:Get*", "s3:List*"}, Resources: []string{fmt.Sprintf("arn:aws:s3:::team-%d-*", i)}},
			{Effect: "Allow", Actions: []string{"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"}, Resources: []string{"*"}},
		}})
	}
	managed := []string{"ReadOnlyAccess", "AmazonS3ReadOnlyAccess", "AdministratorAccess", "PowerUserAccess"}
	for i := 0; i < n; i++ {
		id := awsID(fmt.Sprintf("role/svc-%05d", i))
		key := InlinePolicyKey(id, "app")
		s.Identities = append(s.Identities, Identity{ID: id, Provider: "aws", Kind: "workload_role", Name: fmt.Sprintf("svc-%05d", i)})
		s.Definitions = append(s.Definitions, Definition{Key: key, Name: "app", Kind: KindAWSInlinePolicy, Statements: []Statement{
			{Effect: "Allow", Actions: []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"}, Resources: []string{fmt.Sprintf("arn:aws:dynamodb:us-east-1:%s:table/svc-%05d", acct, i)}},
			{Effect: "Allow", Actions: []string{"kms:Decrypt"}, Resources: []string{"*"}},
			{Effect: "Deny", Actions: []string{"s3:DeleteBucket"}, Resources: []string{"*"}},
		}})
		s.Bindings = append(s.Bindings,
			Binding{Principal: id, Definition: key},
			Binding{Principal: id, Definition: AWSManagedPolicyARN(managed[i%len(managed)])},
			Binding{Principal: id, Definition: fmt.Sprintf("arn:aws:iam::%s:policy/team-%d", acct, i%4)},
		)
	}
	m := NewModel()
	if err := m.Import(s); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkEvaluate is one request decided against the grants of its identity (the work the
// usage tracker and the grants sync do per event).
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		m := bigAWSModel(b, n)
		reqs := make([]Request, 1024)
		perms := []string{"dynamodb:GetItem", "s3:GetObject", "sqs:SendMessage", "kms:Decrypt", "iam:CreateUser", "ec2:RunInstances"}
		for i := range reqs {
			role := i * 7 % n
			reqs[i] = Request{Identity: awsID(fmt.Sprintf("role/svc-%05d", role)), Provider: events.Provider_PROVIDER_AWS,
				Permission: perms[i%len(perms)], Resources: []string{fmt.Sprintf("arn:aws:dynamodb:us-east-1:%s:table/svc-%05d", acct, role)}}
		}
		for _, r := range reqs {
			m.Evaluate(r) // warm the entry cache, as a running model is
		}
		b.Run(fmt.Sprintf("aws_%d_roles", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				m.Evaluate(reqs[i%len(reqs)])
			}
		})
	}
	m := loadModel(b, "k8s-rbac.json")
	sa := events.K8sServiceAccountID("prod", "payments", "api")
	b.Run("k8s_fixture", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Evaluate(Request{Identity: sa, Provider: events.Provider_PROVIDER_K8S, Permission: "get pods", Namespace: "payments"})
		}
	})
}

// BenchmarkApplyGrantChange is an event that attaches or detaches a policy: the overlay
// changes and the indexes are rebuilt.
func BenchmarkApplyGrantChange(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		m := bigAWSModel(b, n)
		b.Run(fmt.Sprintf("aws_%d_roles", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				op, mech := events.GrantOp_GRANT_OP_ADD, "attach_role_policy"
				if i%2 == 1 {
					op, mech = events.GrantOp_GRANT_OP_REMOVE, "detach_role_policy"
				}
				m.Apply(&events.Event{
					Id: fmt.Sprint(i), Provider: events.Provider_PROVIDER_AWS, Account: acct, TimeUnixNano: taken.Add(time.Duration(i+1) * time.Second).UnixNano(),
					Identity: &events.Identity{Id: awsID("user/christophe")}, Outcome: &events.Outcome{Result: events.Result_RESULT_ALLOWED},
					GrantChanges: []*events.GrantChange{{Op: op, Grantee: awsID(fmt.Sprintf("role/svc-%05d", i%n)),
						Grant: AWSManagedPolicyARN("IAMFullAccess"), Mechanism: mech}},
				})
			}
		})
	}
}
