package cloudtrail

import (
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// maxGrantChanges bounds the grant changes of one event.
const maxGrantChanges = 128

// scope carries what grant extraction needs to build canonical ids.
type scope struct {
	partition string
	account   string
	region    string
	caller    string // the acting identity id
	callerARN string // the acting user's canonical ARN, when the caller is an IAM user
}

func (s scope) iam(kind, name string) string {
	if strings.HasPrefix(name, "arn:") {
		return CanonicalARN(name)
	}
	return "arn:" + s.partition + ":iam::" + s.account + ":" + kind + "/" + name
}

func (s scope) roleID(name string) string  { return events.AWSIdentityID(s.iam("role", name)) }
func (s scope) userID(name string) string  { return events.AWSIdentityID(s.iam("user", name)) }
func (s scope) groupID(name string) string { return events.AWSIdentityID(s.iam("group", name)) }

// targetUser returns the identity id of the user a credential call names, and whether that
// user is someone other than the caller (an absent userName means the caller itself).
func (s scope) targetUser(rp *fastjson.Value) (string, bool) {
	name := record.Str(rp, "userName")
	if name == "" {
		return s.caller, false
	}
	id := s.userID(name)
	return id, id != s.caller
}

// grants derives the grant changes of a successful request. A failed or denied request
// changes nothing, so it yields none (its attempt stays visible as the action and outcome).
func (p *Parser) grants(v *fastjson.Value, ev *events.Event, sc scope) {
	if ev.Outcome.GetResult() != events.Result_RESULT_ALLOWED {
		return
	}
	rp := record.Object(v, "requestParameters")
	re := record.Object(v, "responseElements")
	name := stripAPIVersion(ev.Action.Name)
	var out []*events.GrantChange
	add := func(gs ...*events.GrantChange) { out = append(out, gs...) }
	mech := record.Snake(name)
	switch ev.Action.Service {
	case "iam":
		switch name {
		case "AttachUserPolicy", "AttachRolePolicy", "AttachGroupPolicy", "DetachUserPolicy", "DetachRolePolicy", "DetachGroupPolicy":
			op := events.GrantOp_GRANT_OP_ADD
			if strings.HasPrefix(name, "Detach") {
				op = events.GrantOp_GRANT_OP_REMOVE
			}
			add(&events.GrantChange{Op: op, Grantee: sc.principalOf(rp), Grant: record.Str(rp, "policyArn"), Mechanism: mech})
		case "PutUserPolicy", "PutRolePolicy", "PutGroupPolicy":
			base := grantBase{op: events.GrantOp_GRANT_OP_ADD, grantee: sc.principalOf(rp), grant: record.Str(rp, "policyName"), mechanism: mech}
			add(grantsFromPolicy(base, p.policyDoc(rp.Get("policyDocument")))...)
		case "DeleteUserPolicy", "DeleteRolePolicy", "DeleteGroupPolicy":
			add(&events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: sc.principalOf(rp), Grant: record.Str(rp, "policyName"), Mechanism: mech})
		case "CreatePolicyVersion":
			// A version that is not made the default changes nothing yet.
			if record.Bool(rp, "setAsDefault") {
				arn := record.Str(rp, "policyArn")
				base := grantBase{op: events.GrantOp_GRANT_OP_REPLACE, grantee: arn, grant: arn, mechanism: mech}
				add(grantsFromPolicy(base, p.policyDoc(rp.Get("policyDocument")))...)
			}
		case "SetDefaultPolicyVersion":
			arn := record.Str(rp, "policyArn")
			add(&events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: arn, Grant: arn, Mechanism: mech, Scope: record.Str(rp, "versionId")})
		case "AddUserToGroup", "RemoveUserFromGroup":
			op := events.GrantOp_GRANT_OP_ADD
			if name == "RemoveUserFromGroup" {
				op = events.GrantOp_GRANT_OP_REMOVE
			}
			add(&events.GrantChange{Op: op, Grantee: sc.userID(record.Str(rp, "userName")), Grant: sc.iam("group", record.Str(rp, "groupName")), Mechanism: mech})
		case "UpdateAssumeRolePolicy":
			base := grantBase{op: events.GrantOp_GRANT_OP_REPLACE, grantee: sc.roleID(record.Str(rp, "roleName")), grant: "trust_policy", mechanism: mech}
			add(trustGrants(base, p.policyDoc(rp.Get("policyDocument")))...)
		case "CreateRole":
			role := sc.roleID(record.Str(rp, "roleName"))
			if arn := record.Str(re, "role", "arn"); arn != "" {
				role = events.AWSIdentityID(CanonicalARN(arn))
			}
			base := grantBase{op: events.GrantOp_GRANT_OP_ADD, grantee: role, grant: "trust_policy", mechanism: mech}
			add(trustGrants(base, p.policyDoc(rp.Get("assumeRolePolicyDocument")))...)
		case "CreateAccessKey", "DeleteAccessKey", "UpdateAccessKey":
			// Only for another principal: a key for oneself gives no one new power.
			if target, other := sc.targetUser(rp); other {
				op := events.GrantOp_GRANT_OP_ADD
				key := record.Str(re, "accessKey", "accessKeyId")
				if key == "" {
					key = record.Str(rp, "accessKeyId")
				}
				switch {
				case name == "DeleteAccessKey", name == "UpdateAccessKey" && record.Str(rp, "status") != "Active":
					op = events.GrantOp_GRANT_OP_REMOVE
				}
				grant := "access_key"
				if key != "" {
					grant = events.AWSAccessKeyID(key)
				}
				add(&events.GrantChange{Op: op, Grantee: target, Grant: grant, Mechanism: mech})
			}
		case "CreateLoginProfile", "UpdateLoginProfile", "DeleteLoginProfile":
			if target, other := sc.targetUser(rp); other {
				op := events.GrantOp_GRANT_OP_ADD
				if name == "DeleteLoginProfile" {
					op = events.GrantOp_GRANT_OP_REMOVE
				}
				add(&events.GrantChange{Op: op, Grantee: target, Grant: "login_profile", Mechanism: mech})
			}
		case "CreateServiceSpecificCredential", "UploadSSHPublicKey", "UploadSigningCertificate":
			if target, other := sc.targetUser(rp); other {
				add(&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: target, Grant: strings.TrimPrefix(mech, "upload_"), Mechanism: mech})
			}
		case "PutUserPermissionsBoundary", "PutRolePermissionsBoundary", "DeleteUserPermissionsBoundary", "DeleteRolePermissionsBoundary":
			// A boundary limits power: adding one is ADD of a limit, deleting one lifts it.
			op := events.GrantOp_GRANT_OP_ADD
			if strings.HasPrefix(name, "Delete") {
				op = events.GrantOp_GRANT_OP_REMOVE
			}
			add(&events.GrantChange{Op: op, Grantee: sc.principalOf(rp), Grant: record.Str(rp, "permissionsBoundary"), Mechanism: mech, Deny: true})
		case "AddRoleToInstanceProfile", "RemoveRoleFromInstanceProfile":
			op := events.GrantOp_GRANT_OP_ADD
			if strings.HasPrefix(name, "Remove") {
				op = events.GrantOp_GRANT_OP_REMOVE
			}
			add(&events.GrantChange{Op: op, Grantee: sc.iam("instance-profile", record.Str(rp, "instanceProfileName")), Grant: sc.roleID(record.Str(rp, "roleName")), Mechanism: mech})
		}
	case "ec2":
		add(p.ec2Grants(name, rp, re, sc)...)
	case "lambda":
		add(p.lambdaGrants(name, rp, re, sc)...)
	case "s3":
		if name == "PutBucketPolicy" {
			bucket := "arn:" + sc.partition + ":s3:::" + record.Str(rp, "bucketName")
			add(resourcePolicyGrants(bucket, "put_bucket_policy", p.policyDoc(rp.Get("bucketPolicy")))...)
		}
	case "kms":
		if name == "PutKeyPolicy" {
			add(resourcePolicyGrants(record.Str(rp, "keyId"), mech, p.policyDoc(rp.Get("policy")))...)
		}
	case "secretsmanager":
		if name == "PutResourcePolicy" {
			add(resourcePolicyGrants(record.Str(rp, "secretId"), "put_secret_resource_policy", p.policyDoc(rp.Get("resourcePolicy")))...)
		}
	case "ecr":
		if name == "SetRepositoryPolicy" {
			add(resourcePolicyGrants(record.Str(rp, "repositoryName"), mech, p.policyDoc(rp.Get("policyText")))...)
		}
	case "glue":
		if name == "PutResourcePolicy" {
			add(resourcePolicyGrants("arn:"+sc.partition+":glue:"+sc.region+":"+sc.account+":catalog", "put_glue_resource_policy", p.policyDoc(rp.Get("policyInJson")))...)
		}
	case "rds":
		if name == "ModifyDBSnapshotAttribute" || name == "ModifyDBClusterSnapshotAttribute" {
			if record.Str(rp, "attributeName") == "restore" {
				snap := record.Str(rp, "dBSnapshotIdentifier")
				if snap == "" {
					snap = record.Str(rp, "dBClusterSnapshotIdentifier")
				}
				add(shareGrants(snap, "share_db_snapshot", events.GrantOp_GRANT_OP_ADD, record.Strings(rp, "valuesToAdd"))...)
				add(shareGrants(snap, "share_db_snapshot", events.GrantOp_GRANT_OP_REMOVE, record.Strings(rp, "valuesToRemove"))...)
			}
		}
	case "sso":
		if name == "CreateAccountAssignment" || name == "DeleteAccountAssignment" {
			op := events.GrantOp_GRANT_OP_ADD
			if strings.HasPrefix(name, "Delete") {
				op = events.GrantOp_GRANT_OP_REMOVE
			}
			grantee := "aws:identity-center:" + record.Str(rp, "principalId")
			if record.Str(rp, "principalType") == "GROUP" {
				grantee = "aws:identity-center-group:" + record.Str(rp, "principalId")
			}
			add(&events.GrantChange{Op: op, Grantee: grantee, Grant: record.Str(rp, "permissionSetArn"), Scope: record.Str(rp, "targetId"), Mechanism: mech})
		}
	case "rolesanywhere":
		if name == "CreateProfile" || name == "UpdateProfile" {
			// X.509 certificates of a trust anchor may now assume these roles.
			profile := record.Str(re, "profile", "profileArn")
			for _, role := range record.Strings(rp, "roleArns") {
				add(&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: events.AWSIdentityID(CanonicalARN(role)), Grant: "trust_policy", Mechanism: mech, Principals: []string{profile}})
			}
		}
	}
	if len(out) > maxGrantChanges {
		out = out[:maxGrantChanges]
	}
	ev.GrantChanges = out
}

// principalOf returns the identity id of the user, role or group a policy call names.
func (s scope) principalOf(rp *fastjson.Value) string {
	switch {
	case record.Str(rp, "roleName") != "":
		return s.roleID(record.Str(rp, "roleName"))
	case record.Str(rp, "userName") != "":
		return s.userID(record.Str(rp, "userName"))
	case record.Str(rp, "groupName") != "":
		return s.groupID(record.Str(rp, "groupName"))
	}
	return ""
}

// ec2Grants: snapshot and image sharing, and roles passed to instances.
func (p *Parser) ec2Grants(name string, rp, re *fastjson.Value, sc scope) []*events.GrantChange {
	var out []*events.GrantChange
	switch name {
	case "ModifySnapshotAttribute", "ModifyImageAttribute":
		attr, target, mech := "createVolumePermission", record.Str(rp, "snapshotId"), "share_snapshot"
		if name == "ModifyImageAttribute" {
			attr, target, mech = "launchPermission", record.Str(rp, "imageId"), "share_image"
		}
		for _, op := range []struct {
			key string
			op  events.GrantOp
		}{{"add", events.GrantOp_GRANT_OP_ADD}, {"remove", events.GrantOp_GRANT_OP_REMOVE}} {
			var who []string
			for _, it := range record.Array(rp, attr, op.key, "items") {
				if u := record.Scalar(it, "userId"); u != "" {
					who = append(who, u)
				}
				if g := record.Str(it, "group"); g != "" {
					who = append(who, g)
				}
			}
			out = append(out, shareGrants(target, mech, op.op, who)...)
		}
	case "RunInstances":
		profile := record.Str(rp, "iamInstanceProfile", "arn")
		if profile == "" {
			if n := record.Str(rp, "iamInstanceProfile", "name"); n != "" {
				profile = sc.iam("instance-profile", n)
			}
		}
		if profile == "" {
			return nil
		}
		instances := record.Array(re, "instancesSet", "items")
		if len(instances) == 0 {
			out = append(out, passRole("", profile))
		}
		for _, it := range instances {
			out = append(out, passRole(sc.ec2Instance(record.Str(it, "instanceId")), profile))
		}
	case "AssociateIamInstanceProfile", "ReplaceIamInstanceProfileAssociation":
		req := record.Object(rp, name+"Request")
		if req == nil {
			req = rp
		}
		profile := record.Str(req, "IamInstanceProfile", "Arn")
		if profile == "" {
			if n := record.Str(req, "IamInstanceProfile", "Name"); n != "" {
				profile = sc.iam("instance-profile", n)
			}
		}
		if profile != "" {
			out = append(out, passRole(sc.ec2Instance(record.Str(req, "InstanceId")), profile))
		}
	}
	return out
}

func (s scope) ec2Instance(id string) string {
	if id == "" {
		return ""
	}
	return "arn:" + s.partition + ":ec2:" + s.region + ":" + s.account + ":instance/" + id
}

// lambdaGrants: roles passed to functions and resource-policy statements added to them.
func (p *Parser) lambdaGrants(name string, rp, re *fastjson.Value, sc scope) []*events.GrantChange {
	fn := record.Str(re, "functionArn")
	if fn == "" {
		fn = record.Str(rp, "functionName")
		if fn != "" && !strings.HasPrefix(fn, "arn:") {
			fn = "arn:" + sc.partition + ":lambda:" + sc.region + ":" + sc.account + ":function:" + fn
		}
	}
	switch name {
	case "CreateFunction", "UpdateFunctionConfiguration":
		if role := record.Str(rp, "role"); role != "" {
			return []*events.GrantChange{passRole(fn, events.AWSIdentityID(CanonicalARN(role)))}
		}
	case "AddPermission", "RemovePermission":
		op := events.GrantOp_GRANT_OP_ADD
		if name == "RemovePermission" {
			op = events.GrantOp_GRANT_OP_REMOVE
		}
		principal := record.Str(rp, "principal")
		grantee := principal
		switch {
		case principal == "*":
		case strings.HasSuffix(principal, ".amazonaws.com"):
			grantee = "aws:service:" + principal
		case principal != "":
			grantee = awsPrincipal(principal)
		}
		var perms []string
		if a := record.Str(rp, "action"); a != "" {
			perms = []string{a}
		}
		return []*events.GrantChange{{Op: op, Grantee: grantee, Grant: fn, Permissions: perms, Mechanism: "lambda_" + record.Snake(name), Scope: record.Str(rp, "sourceArn")}}
	}
	return nil
}

// passRole is a role handed to a compute resource (iam:PassRole): the resource acts with the
// role's power from now on.
func passRole(resource, role string) *events.GrantChange {
	return &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: resource, Grant: role, Permissions: []string{"iam:PassRole"}, Mechanism: "pass_role"}
}

// shareGrants: a resource shared with accounts ("all" means public).
func shareGrants(resource, mech string, op events.GrantOp, who []string) []*events.GrantChange {
	out := make([]*events.GrantChange, 0, len(who))
	for _, w := range who {
		grantee := "*"
		if !strings.EqualFold(w, "all") {
			grantee = awsPrincipal(w)
		}
		out = append(out, &events.GrantChange{Op: op, Grantee: grantee, Grant: resource, Mechanism: mech})
	}
	return out
}

// resourcePolicyGrants: the principals a resource policy's statements name gain (or are
// denied) its actions on the resource; one grant change per statement and principal.
func resourcePolicyGrants(resource, mech string, stmts []statement) []*events.GrantChange {
	var out []*events.GrantChange
	for _, s := range stmts {
		for _, who := range s.principals {
			out = append(out, &events.GrantChange{
				Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: who, Grant: resource, Permissions: s.actions,
				Scope: strings.Join(s.resources, ","), Mechanism: mech, Deny: s.deny,
			})
		}
	}
	return out
}
