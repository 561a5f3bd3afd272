package grants

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// The tests in this file run the repository's real audit logs (and the RBAC audit fixture)
// through the real normalizer into Model.Apply, so that the grant changes this package
// understands are the ones normalize produces.

const repoTestdata = "../../../../testdata/"

// normalized reads log files the way the pipeline does (ingest's reader, then normalize),
// in event-time order. Records normalize refuses are skipped: normalize's own tests cover them.
func normalized(t testing.TB, cluster string, paths ...string) []*events.Event {
	t.Helper()
	n := normalize.NewNormalizer()
	var out []*events.Event
	for _, path := range paths {
		err := ingest.ReadFile(path, func(i int, data []byte) error {
			if ev, err := n.Normalize(normalizeInput(path, i, cluster, data)); err == nil {
				out = append(out, ev)
			}
			return nil
		}, func(int, error) error { return nil })
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TimeUnixNano < out[j].TimeUnixNano })
	return out
}

func normalizeInput(path string, i int, cluster string, data []byte) normalize.Input {
	return normalize.Input{
		Data: data, Format: "auto", Cluster: cluster, Source: "test",
		RecordID: fmt.Sprintf("test:%s#%d", filepath.Base(path), i), Position: path, ReceivedAt: time.Unix(1_800_000_000, 0),
	}
}

// pantherEvents reads the events of the Panther test cases (one {…, "event": {…}} a line).
func pantherEvents(t testing.TB) []*events.Event {
	t.Helper()
	f, err := os.Open(repoTestdata + "panther/panther_tests.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := normalize.NewNormalizer()
	var out []*events.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for i := 0; sc.Scan(); i++ {
		var tc struct {
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &tc); err != nil {
			t.Fatalf("panther line %d: %v", i+1, err)
		}
		if ev, err := n.Normalize(normalizeInput("panther_tests.jsonl", i, "eks", tc.Event)); err == nil {
			out = append(out, ev)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TimeUnixNano < out[j].TimeUnixNano })
	return out
}

func allLogs(t *testing.T) []*events.Event {
	var paths []string
	for _, pattern := range []string{"cloudtrail/*/*.json*", "gcp/*/*", "k8s/*/*"} {
		m, err := filepath.Glob(repoTestdata + pattern)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	evs := normalized(t, "demo", paths...)
	evs = append(evs, pantherEvents(t)...)
	return append(evs, normalized(t, "prod", "testdata/k8s-rbac-audit.jsonl")...)
}

// TestNormalizedGrantChanges: every grant change normalize makes of the real logs is one
// this package models or ignores on purpose, and none of them turns into a grant that is
// not one (a trust policy, a key, a resource, a token).
func TestNormalizedGrantChanges(t *testing.T) {
	evs := allLogs(t)
	m := NewModel()
	mechanisms := map[string]int{}
	for _, ev := range evs {
		for _, gc := range ev.GrantChanges {
			mechanisms[ev.Provider.Label()+"/"+gc.Mechanism]++
			if !KnownMechanism(ev.Provider, gc.Mechanism) {
				t.Errorf("normalize emits the %s mechanism %q, which grants does not know (event %s)", ev.Provider.Label(), gc.Mechanism, ev.Id)
			}
		}
		m.Apply(ev)
	}
	if len(mechanisms) < 15 {
		t.Errorf("only %d mechanisms in the logs: %v", len(mechanisms), mechanisms)
	}
	t.Logf("grant changes by mechanism: %v", mechanisms)
	for _, p := range m.Principals() {
		if !strings.HasPrefix(p, "aws:arn:") && !strings.HasPrefix(p, "gcp:") && !strings.HasPrefix(p, "k8s:") {
			t.Errorf("a binding names %q, which is not an identity or a group", p)
		}
		for _, e := range m.Entries(p) {
			if !e.Unresolved {
				continue
			}
			for _, bad := range []string{"trust_policy", "login_profile", "aws:key:", "gcp:key:", "token", "/"} {
				if strings.HasPrefix(e.Grant, bad) {
					t.Errorf("%s holds %q, which is not a grant", p, e.Grant)
				}
			}
		}
	}
	for _, c := range m.Credentials() {
		if !strings.HasPrefix(c.ID, "aws:key:") && !strings.HasPrefix(c.ID, "gcp:key:") || c.Identity == "" {
			t.Errorf("credential %+v", c)
		}
	}
}

func stratus(name string) string {
	return repoTestdata + "cloudtrail/stratus-red-team/aws." + name + ".json"
}

func TestNormalizedStratus(t *testing.T) {
	t.Run("iam-create-admin-user against its account's snapshot", func(t *testing.T) {
		m := loadModel(t, "aws-authorization-details.json")
		christophe := permissionsOf(m, awsID("user/christophe"))
		for _, ev := range normalized(t, "demo", stratus("persistence.iam-create-admin-user")) {
			m.Apply(ev)
		}
		user := awsID("user/malicious-iam-user")
		if !m.IsAdmin(user) || !allowed(m, user, "iam:CreateUser") {
			t.Errorf("malicious-iam-user is not admin: %v", permissionsOf(m, user))
		}
		var keys []string
		for _, c := range m.Credentials() {
			if c.Identity == user && c.Active {
				keys = append(keys, c.ID)
			}
		}
		if len(keys) != 1 || !strings.HasPrefix(keys[0], "aws:key:AKIA") {
			t.Errorf("keys of malicious-iam-user = %v, want the one created", keys)
		}
		if got := permissionsOf(m, awsID("user/christophe")); strings.Join(got, "\n") != strings.Join(christophe, "\n") {
			t.Errorf("the actor's grants changed: %v", got)
		}
	})
	t.Run("iam-create-backdoor-role: AdministratorAccess counts, the trust policy does not", func(t *testing.T) {
		m := NewModel()
		var role string
		for _, ev := range normalized(t, "demo", stratus("persistence.iam-create-backdoor-role")) {
			for _, gc := range ev.GrantChanges {
				if gc.Mechanism == "attach_role_policy" {
					role = gc.Grantee
				}
			}
			m.Apply(ev)
		}
		got := permissionsOf(m, role)
		if want := []string{"arn:aws:iam::aws:policy/AdministratorAccess *"}; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("grants of %s = %v, want %v", role, got, want)
		}
	})
	t.Run("iam-backdoor-role: a widened trust policy grants the role nothing", func(t *testing.T) {
		m := NewModel()
		for _, ev := range normalized(t, "demo", stratus("persistence.iam-backdoor-role")) {
			if ch := m.Apply(ev); len(ch) != 0 {
				t.Errorf("%s changed grants: %+v", ev.GetAction().GetPermission(), ch)
			}
		}
		if len(m.Principals()) != 0 {
			t.Errorf("principals %v", m.Principals())
		}
	})
}

func TestNormalizedGCP(t *testing.T) {
	m := NewModel()
	for _, ev := range pantherEvents(t) {
		if ev.Provider == events.Provider_PROVIDER_GCP {
			m.Apply(ev)
		}
	}
	user := events.GCPUserID("username@gmail.com")
	// The Panther case adds roles/viewer for this user on project western-verve-123456.
	d := m.Evaluate(Request{Identity: user, Provider: events.Provider_PROVIDER_GCP, Permission: "compute.instances.list", Account: "western-verve-123456"})
	if !d.Allowed {
		t.Errorf("roles/viewer from SetIamPolicy not in force: %v", permissionsOf(m, user))
	}
	if d := m.Evaluate(Request{Identity: user, Provider: events.Provider_PROVIDER_GCP, Permission: "compute.instances.list", Account: "other-project"}); d.Allowed {
		t.Error("a project binding applies in another project")
	}
	role, ok := m.Definition("projects/western-verve-123456/roles/CustomRole")
	if !ok || len(role.Permissions) == 0 {
		t.Errorf("custom role from iam.roles.create = %+v", role)
	}
	found := false
	for _, c := range m.Credentials() {
		found = found || c.Identity == events.GCPServiceAccountID("created-service-account@gcp-project1.iam.gserviceaccount.com") && c.Active
	}
	if !found {
		t.Errorf("service account key from CreateServiceAccountKey not recorded: %+v", m.Credentials())
	}
}

func TestNormalizedKubernetesRBAC(t *testing.T) {
	m := loadModel(t, "k8s-rbac.json") // cluster "prod"
	builder := events.K8sServiceAccountID("prod", "ci", "builder")
	api := events.K8sServiceAccountID("prod", "payments", "api")
	evs := normalized(t, "prod", "testdata/k8s-rbac-audit.jsonl")
	if len(evs) != 7 {
		t.Fatalf("%d events, want 7", len(evs))
	}
	var uses []bool
	for _, ev := range evs {
		if ev.Identity.Id == builder {
			uses = append(uses, m.Evaluate(RequestFromEvent(ev)).Allowed)
		}
		m.Apply(ev)
	}
	if len(uses) != 2 || !uses[0] || !uses[1] {
		t.Errorf("ci/builder's secret read and deployment patch allowed = %v, want both through the new bindings", uses)
	}
	req := func(id, perm, ns string) bool {
		return m.Evaluate(Request{Identity: id, Provider: events.Provider_PROVIDER_K8S, Permission: perm, Namespace: ns, APIGroup: unknownAPIGroup}).Allowed
	}
	if req(builder, "get secrets", "kube-system") {
		t.Error("the narrowed ClusterRole still allows reading secrets")
	}
	if !req(builder, "patch deployments", "kube-system") {
		t.Error("the ClusterRoleBinding is not in force")
	}
	if req(api, "get pods", "payments") {
		t.Error("the deleted RoleBinding payments/api-pod-reader still grants")
	}
}
