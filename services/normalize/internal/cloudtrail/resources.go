package cloudtrail

import (
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// maxResources bounds the resources of one event.
const maxResources = 64

// resources lists the resources the record names: CloudTrail's own resources list, and what
// the request parameters of common services name (IAM principals and policies, the role an
// STS call assumes, S3 buckets and objects, EC2 instances, Lambda functions, secrets).
func resources(v *fastjson.Value, ev *events.Event, sc scope) {
	seen := map[string]bool{}
	add := func(id, typ, account string) {
		if id == "" || seen[id] || len(ev.Resources) >= maxResources {
			return
		}
		seen[id] = true
		ev.Resources = append(ev.Resources, &events.Resource{Id: id, Type: typ, Name: resourceName(id), Account: account})
	}
	for _, r := range record.Array(v, "resources") {
		add(record.Str(r, "ARN"), record.Str(r, "type"), record.Str(r, "accountId"))
	}
	rp := record.Object(v, "requestParameters")
	re := record.Object(v, "responseElements")
	if rp == nil && re == nil {
		return
	}
	switch ev.Action.Service {
	case "iam":
		if n := record.Str(rp, "roleName"); n != "" {
			add(sc.iam("role", n), "AWS::IAM::Role", sc.account)
		}
		if n := record.Str(rp, "userName"); n != "" {
			add(sc.iam("user", n), "AWS::IAM::User", sc.account)
		}
		if n := record.Str(rp, "groupName"); n != "" {
			add(sc.iam("group", n), "AWS::IAM::Group", sc.account)
		}
		if a := record.Str(rp, "policyArn"); a != "" {
			add(a, "AWS::IAM::Policy", accountOf(a))
		}
		if n := record.Str(rp, "instanceProfileName"); n != "" {
			add(sc.iam("instance-profile", n), "AWS::IAM::InstanceProfile", sc.account)
		}
		if k := record.Str(re, "accessKey", "accessKeyId"); k != "" {
			add(events.AWSAccessKeyID(k), "AWS::IAM::AccessKey", sc.account)
		} else if k := record.Str(rp, "accessKeyId"); k != "" {
			add(events.AWSAccessKeyID(k), "AWS::IAM::AccessKey", sc.account)
		}
	case "sts":
		if a := record.Str(rp, "roleArn"); a != "" {
			add(a, "AWS::IAM::Role", accountOf(a))
		}
		if a := record.Str(re, "assumedRoleUser", "arn"); a != "" {
			add(a, "AWS::STS::AssumedRole", accountOf(a))
		}
		if a := record.Str(re, "federatedUser", "arn"); a != "" {
			add(a, "AWS::STS::FederatedUser", accountOf(a))
		}
	case "s3":
		if b := record.Str(rp, "bucketName"); b != "" {
			add("arn:"+sc.partition+":s3:::"+b, "AWS::S3::Bucket", "")
			if k := record.Str(rp, "key"); k != "" {
				add("arn:"+sc.partition+":s3:::"+b+"/"+k, "AWS::S3::Object", "")
			}
		}
	case "ec2":
		if id := record.Str(rp, "instanceId"); id != "" {
			add(sc.ec2Instance(id), "AWS::EC2::Instance", sc.account)
		}
		for _, it := range record.Array(rp, "instancesSet", "items") {
			add(sc.ec2Instance(record.Str(it, "instanceId")), "AWS::EC2::Instance", sc.account)
		}
		for _, it := range record.Array(re, "instancesSet", "items") {
			add(sc.ec2Instance(record.Str(it, "instanceId")), "AWS::EC2::Instance", sc.account)
		}
		if id := record.Str(rp, "snapshotId"); id != "" {
			add("arn:"+sc.partition+":ec2:"+sc.region+"::snapshot/"+id, "AWS::EC2::Snapshot", sc.account)
		}
		if id := record.Str(rp, "imageId"); id != "" {
			add("arn:"+sc.partition+":ec2:"+sc.region+"::image/"+id, "AWS::EC2::Image", sc.account)
		}
	case "lambda":
		fn := record.Str(re, "functionArn")
		if fn == "" {
			if n := record.Str(rp, "functionName"); n != "" {
				fn = n
				if !strings.HasPrefix(n, "arn:") {
					fn = "arn:" + sc.partition + ":lambda:" + sc.region + ":" + sc.account + ":function:" + n
				}
			}
		}
		add(fn, "AWS::Lambda::Function", sc.account)
		if r := record.Str(rp, "role"); r != "" {
			add(r, "AWS::IAM::Role", accountOf(r))
		}
	case "secretsmanager":
		if id := record.Str(rp, "secretId"); id != "" {
			add(id, "AWS::SecretsManager::Secret", sc.account)
		}
	case "ssm":
		if n := record.Str(rp, "name"); n != "" {
			add(n, "AWS::SSM::Parameter", sc.account)
		}
		for _, n := range record.Strings(rp, "names") {
			add(n, "AWS::SSM::Parameter", sc.account)
		}
		if t := record.Str(rp, "target"); t != "" {
			add(sc.ec2Instance(t), "AWS::EC2::Instance", sc.account)
		}
		for _, id := range record.Strings(rp, "instanceIds") {
			add(sc.ec2Instance(id), "AWS::EC2::Instance", sc.account)
		}
	case "kms":
		if id := record.Str(rp, "keyId"); id != "" {
			add(id, "AWS::KMS::Key", sc.account)
		}
	}
}

// resourceName is the last part of an ARN: the name after the last "/" or ":".
func resourceName(arn string) string {
	if i := strings.LastIndexAny(arn, "/:"); i >= 0 && i+1 < len(arn) {
		return arn[i+1:]
	}
	return ""
}

// accountOf returns the account field of an ARN.
func accountOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}
