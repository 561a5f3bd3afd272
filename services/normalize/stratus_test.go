package normalize_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

const stratusDir = "../../testdata/cloudtrail/stratus-red-team"

// stratusEvents normalizes every record of one Stratus Red Team technique file, keyed by
// eventName (the techniques log each name once, except repeated reads).
func stratusEvents(t *testing.T, technique string) map[string]*events.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(stratusDir, technique+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var records []json.RawMessage
	if err := json.Unmarshal(data, &records); err != nil {
		t.Fatal(err)
	}
	n := normalize.NewNormalizer()
	out := map[string]*events.Event{}
	for i, r := range records {
		ev, err := n.Normalize(normalize.Input{Data: r, Format: "auto", Source: "test"})
		if err != nil {
			t.Fatalf("%s record %d: %v", technique, i, err)
		}
		out[ev.Action.Name] = ev
	}
	return out
}

const (
	add     = events.GrantOp_GRANT_OP_ADD
	replace = events.GrantOp_GRANT_OP_REPLACE
)

func TestStratusIAMTechniques(t *testing.T) {
	christophe := func(acct string) string { return "aws:arn:aws:iam::" + acct + ":user/christophe" }
	tests := []struct {
		technique string
		event     string
		actor     string
		perm      string
		grants    []*events.GrantChange
	}{
		{
			technique: "aws.persistence.iam-backdoor-role", event: "UpdateAssumeRolePolicy",
			actor: christophe("751203476945"), perm: "iam:UpdateAssumeRolePolicy",
			grants: []*events.GrantChange{
				{Op: replace, Grantee: "aws:arn:aws:iam::751203476945:role/stratus-red-team-backdoor-r-role", Grant: "trust_policy", Permissions: []string{"sts:AssumeRole"}, Mechanism: "update_assume_role_policy", Principals: []string{"aws:service:ec2.amazonaws.com"}},
				{Op: replace, Grantee: "aws:arn:aws:iam::751203476945:role/stratus-red-team-backdoor-r-role", Grant: "trust_policy", Permissions: []string{"sts:AssumeRole"}, Mechanism: "update_assume_role_policy", Principals: []string{"aws:arn:aws:iam::193672423079:root"}},
			},
		},
		{
			technique: "aws.persistence.iam-backdoor-user", event: "CreateAccessKey",
			actor: christophe("946986569305"), perm: "iam:CreateAccessKey",
			grants: []*events.GrantChange{
				{Op: add, Grantee: "aws:arn:aws:iam::946986569305:user/stratus-red-team-backdoor-u-user", Grant: "aws:key:AKIAL80DWDVKKM0UXEER", Mechanism: "create_access_key"},
			},
		},
		{
			technique: "aws.persistence.iam-create-admin-user", event: "AttachUserPolicy",
			actor: christophe("229654561268"), perm: "iam:AttachUserPolicy",
			grants: []*events.GrantChange{
				{Op: add, Grantee: "aws:arn:aws:iam::229654561268:user/malicious-iam-user", Grant: "arn:aws:iam::aws:policy/AdministratorAccess", Mechanism: "attach_user_policy"},
			},
		},
		{
			technique: "aws.persistence.iam-create-admin-user", event: "CreateAccessKey",
			actor: christophe("229654561268"), perm: "iam:CreateAccessKey",
			grants: []*events.GrantChange{
				{Op: add, Grantee: "aws:arn:aws:iam::229654561268:user/malicious-iam-user", Grant: "aws:key:AKIAXAFZN8JEPF6L682H", Mechanism: "create_access_key"},
			},
		},
		{
			technique: "aws.persistence.iam-create-admin-user", event: "CreateUser",
			actor: christophe("229654561268"), perm: "iam:CreateUser",
		},
		{
			technique: "aws.persistence.iam-create-backdoor-role", event: "CreateRole",
			actor: christophe("609418236337"), perm: "iam:CreateRole",
			grants: []*events.GrantChange{
				{Op: add, Grantee: "aws:arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role", Grant: "trust_policy", Permissions: []string{"sts:AssumeRole"}, Mechanism: "create_role", Principals: []string{"aws:arn:aws:iam::193672423079:root"}},
			},
		},
		{
			technique: "aws.persistence.iam-create-backdoor-role", event: "AttachRolePolicy",
			actor: christophe("609418236337"), perm: "iam:AttachRolePolicy",
			grants: []*events.GrantChange{
				{Op: add, Grantee: "aws:arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role", Grant: "arn:aws:iam::aws:policy/AdministratorAccess", Mechanism: "attach_role_policy"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.technique+"/"+tt.event, func(t *testing.T) {
			ev := stratusEvents(t, tt.technique)[tt.event]
			if ev == nil {
				t.Fatalf("no %s event", tt.event)
			}
			if ev.Identity.Id != tt.actor || ev.Identity.Kind != events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER {
				t.Errorf("identity = %s (%s), want %s access_key_user", ev.Identity.Id, ev.Identity.Kind.Label(), tt.actor)
			}
			if ev.Credential.GetType() != events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY {
				t.Errorf("credential = %v, want an access key", ev.Credential)
			}
			if ev.Action.Permission != tt.perm {
				t.Errorf("permission = %q, want %q", ev.Action.Permission, tt.perm)
			}
			if diff := cmp.Diff(tt.grants, ev.GrantChanges, protocmp.Transform()); diff != "" {
				t.Errorf("grant changes (-want +got):\n%s", diff)
			}
		})
	}
}

// The instance-role session of ec2-steal-instance-credentials: credentials delivered to an
// EC2 instance (ec2RoleDelivery), then used from the attacker's address.
func TestStratusStolenInstanceCredentials(t *testing.T) {
	ev := stratusEvents(t, "aws.credential-access.ec2-steal-instance-credentials")["GetCallerIdentity"]
	if ev == nil {
		t.Fatal("no GetCallerIdentity event")
	}
	role := "aws:arn:aws:iam::017622104382:role/stratus-red-team-ec2-steal-credentials-role"
	want := &events.Event{
		Identity: &events.Identity{
			Id: role, Kind: events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE, Type: "AssumedRole",
			Name: "stratus-red-team-ec2-steal-credentials-role", Account: "017622104382",
			SessionName: "i-786a3A8B5C0d92eF4", PrincipalId: "AROALHCCSKSM395EGX3XN:i-786a3A8B5C0d92eF4",
		},
		Credential: &events.Credential{
			Id: "aws:session:ASIAP5CT9NN8EYVU1FXV", Type: events.CredentialType_CREDENTIAL_TYPE_SESSION,
			IssuedUnixNano: 1722586852000000000, IssuedTo: "i-786a3A8B5C0d92eF4", Delivery: "ec2_role_delivery",
		},
		Delegation: []*events.Delegation{{
			From: role, To: "arn:aws:sts::017622104382:assumed-role/stratus-red-team-ec2-steal-credentials-role/i-786a3A8B5C0d92eF4",
			Kind: events.DelegationKind_DELEGATION_KIND_ASSUME_ROLE,
		}},
		Network: &events.Network{Ip: "18.236.253.47", UserAgent: "stratus-red-team_c763d13b-d099-488a-bb3e-f57cb2fed240", Region: "us-north-2r"},
	}
	got := &events.Event{Identity: ev.Identity, Credential: ev.Credential, Delegation: ev.Delegation, Network: ev.Network}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("instance-role session (-want +got):\n%s", diff)
	}
}
