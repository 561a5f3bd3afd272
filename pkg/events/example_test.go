package events_test

import (
	"fmt"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

func ExamplePartition() {
	id := events.AWSIdentityID("arn:aws:iam::111111111111:role/deploy")
	p := events.Partition(id, 16)
	fmt.Println(events.EventSubject(events.Provider_PROVIDER_AWS, p) == fmt.Sprintf("nhi.events.aws.%d", p))
	// Output: true
}

func ExampleK8sServiceAccountID() {
	fmt.Println(events.K8sServiceAccountID("prod", "kube-system", "default"))
	// Output: k8s:prod:system:serviceaccount:kube-system:default
}
