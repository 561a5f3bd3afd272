package usage

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

var t0 = time.Date(2024, 8, 2, 10, 0, 0, 0, time.UTC)

func loadModel(t testing.TB, files ...string) *grants.Model {
	t.Helper()
	m := grants.NewModel()
	for _, f := range files {
		snaps, err := grants.ReadFile(filepath.Join("../grants/testdata", f), grants.ImportOptions{Cluster: "prod", Taken: t0.Add(-24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if err := m.Import(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

func k8sEvent(id, user string, verb, resource, ns, group string, code events.Result, at time.Time) *events.Event {
	perm := verb + " " + resource
	return &events.Event{
		Id: id, Provider: events.Provider_PROVIDER_K8S, Account: "prod", TimeUnixNano: at.UnixNano(),
		Identity:  &events.Identity{Id: user, Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT},
		Action:    &events.Action{Service: group, Name: verb, Permission: perm},
		Resources: []*events.Resource{{Id: "/namespaces/" + ns + "/" + resource, Type: resource, Namespace: ns}},
		Outcome:   &events.Outcome{Result: code},
	}
}

func TestTrackerK8s(t *testing.T) {
	tr := NewTracker(loadModel(t, "k8s-rbac.json"))
	api := events.K8sServiceAccountID("prod", "payments", "api")
	allowed, denied := events.Result_RESULT_ALLOWED, events.Result_RESULT_DENIED
	for _, ev := range []*events.Event{
		k8sEvent("1", api, "get", "pods", "payments", "core", allowed, t0),
		k8sEvent("1", api, "get", "pods", "payments", "core", allowed, t0), // redelivered
		k8sEvent("2", api, "list", "pods", "payments", "core", allowed, t0.Add(time.Minute)),
		k8sEvent("3", api, "get", "pods/log", "payments", "core", allowed, t0.Add(2*time.Minute)),
		k8sEvent("4", api, "get", "secrets", "payments", "core", denied, t0.Add(3*time.Minute)),
		k8sEvent("5", api, "create", "deployments", "payments", "apps", allowed, t0.Add(4*time.Minute)),
	} {
		tr.Observe(ev)
	}
	r := tr.Report(api)
	if diff := cmp.Diff([]string{"create deployments", "get pods", "get pods/log", "list pods"}, r.Used); diff != "" {
		t.Errorf("used (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{"get secrets"}, r.Denied); diff != "" {
		t.Errorf("denied (-want +got)\n%s", diff)
	}
	// allowed by the API server, but no imported binding grants it: a stale snapshot or a
	// grant outside it.
	if diff := cmp.Diff([]string{"create deployments"}, r.Ungranted); diff != "" {
		t.Errorf("ungranted (-want +got)\n%s", diff)
	}
	if !contains(r.Granted, "create selfsubjectaccessreviews") || !contains(r.Unused, "watch pods") || contains(r.Unused, "get pods") {
		t.Errorf("granted=%v unused=%v", r.Granted, r.Unused)
	}
	if r.Uses[1].Permission != "get pods" || r.Uses[1].Count != 1 {
		t.Errorf("a redelivered event was counted twice: %+v", r.Uses[1])
	}
	want := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
    name: api-least-privilege
    namespace: payments
rules:
    - apiGroups:
        - ""
      resources:
        - pods
      verbs:
        - get
        - list
    - apiGroups:
        - ""
      resources:
        - pods/log
      verbs:
        - get
    - apiGroups:
        - apps
      resources:
        - deployments
      verbs:
        - create
`
	if diff := cmp.Diff(want, r.LeastPrivilege); diff != "" {
		t.Errorf("least privilege (-want +got)\n%s", diff)
	}
	if r.Utilization <= 0 || r.Utilization >= 1 {
		t.Errorf("utilization = %v", r.Utilization)
	}
}

func TestGCPLeastPrivilege(t *testing.T) {
	tr := NewTracker(loadModel(t, "gcp-ancestors-iam-policy.json", "gcp-role-reportPublisher.json"))
	sa := events.GCPServiceAccountID("reporting@acme-prod.iam.gserviceaccount.com")
	for i, p := range []string{"storage.objects.get", "storage.objects.list", "pubsub.topics.publish", "bigquery.jobs.create"} {
		tr.Observe(&events.Event{
			Id: p, Provider: events.Provider_PROVIDER_GCP, Account: "acme-prod", TimeUnixNano: t0.Add(time.Duration(i) * time.Minute).UnixNano(),
			Identity: &events.Identity{Id: sa, Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT},
			Action:   &events.Action{Permission: p},
			Outcome:  &events.Outcome{Result: events.Result_RESULT_ALLOWED},
		})
	}
	r := tr.Report(sa)
	lp, ok := r.LeastPrivilege.(GCPLeastPrivilege)
	if !ok {
		t.Fatalf("least privilege is %T", r.LeastPrivilege)
	}
	want := GCPLeastPrivilege{
		Roles:     []string{"roles/bigquery.jobUser", "roles/pubsub.publisher", "roles/storage.objectViewer"},
		Uncovered: []string{},
		Excess:    4, // resourcemanager.projects.get/list, storage.managedFolders.get/list
		CustomRole: GCPCustomRole{Title: "Least privilege", Description: "Exactly the permissions observed in use (nhiwatch).", Stage: "GA",
			IncludedPermissions: []string{"bigquery.jobs.create", "pubsub.topics.publish", "storage.objects.get", "storage.objects.list"}},
	}
	if diff := cmp.Diff(want, lp); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{"bigquery.jobs.create"}, r.Ungranted); diff != "" {
		t.Errorf("ungranted (-want +got)\n%s", diff)
	}
	if !strings.HasPrefix(r.Kind, "service_account") || r.Admin {
		t.Errorf("kind=%q admin=%v", r.Kind, r.Admin)
	}
}

func TestIdentityIDs(t *testing.T) {
	tr := NewTracker(loadModel(t, "aws-authorization-details.json", "gcp-ancestors-iam-policy.json", "k8s-rbac.json"))
	for _, id := range tr.IdentityIDs() {
		if strings.Contains(id, ":group") || strings.HasPrefix(id, "gcp:domain:") {
			t.Errorf("group principal %q listed as an identity", id)
		}
	}
	if !contains(tr.IdentityIDs(), events.K8sUserID("prod", "system:admin")) {
		t.Error("user bound by a RoleBinding is not listed")
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
