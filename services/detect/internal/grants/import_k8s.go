package grants

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

type k8sObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Rules   []Rule `json:"rules"`
	RoleRef struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"roleRef"`
	Subjects []struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"subjects"`
	Items []json.RawMessage `json:"items"`
}

// ImportK8sRBAC reads `kubectl get clusterroles,clusterrolebindings,roles,rolebindings -A
// -o json` (a v1 List), a typed list (ClusterRoleList, …) or one object, for cluster.
// Aggregated ClusterRoles are read with the rules the API server aggregated into them.
func ImportK8sRBAC(data []byte, cluster string, taken time.Time) (*Snapshot, error) {
	if cluster == "" {
		cluster = "default"
	}
	var top k8sObject
	if err := json.Unmarshal(bytes.TrimSpace(data), &top); err != nil {
		return nil, fmt.Errorf("%w: kubernetes RBAC: %v", ErrFormat, err)
	}
	objs := []k8sObject{top}
	if top.Items != nil || top.Kind == "List" || len(top.Kind) > 4 && top.Kind[len(top.Kind)-4:] == "List" {
		objs = objs[:0]
		for i, raw := range top.Items {
			var o k8sObject
			if err := json.Unmarshal(raw, &o); err != nil {
				return nil, fmt.Errorf("%w: kubernetes RBAC item %d: %v", ErrFormat, i, err)
			}
			objs = append(objs, o)
		}
	}
	s := &Snapshot{Scope: "k8s:" + cluster, Provider: "k8s", Format: FormatK8sRBAC, Taken: taken}
	seen := map[string]bool{}
	for i, o := range objs {
		name, ns := o.Metadata.Name, o.Metadata.Namespace
		if name == "" {
			return nil, fmt.Errorf("%w: kubernetes RBAC item %d has no metadata.name", ErrFormat, i)
		}
		switch o.Kind {
		case "ClusterRole":
			s.Definitions = append(s.Definitions, Definition{Key: K8sClusterRoleKey(cluster, name), Name: "ClusterRole/" + name, Kind: KindK8sClusterRole, Rules: o.Rules})
		case "Role":
			s.Definitions = append(s.Definitions, Definition{Key: K8sRoleKey(cluster, ns, name), Name: "Role/" + ns + "/" + name, Kind: KindK8sRole, Rules: o.Rules})
		case "ClusterRoleBinding", "RoleBinding":
			scope, bname := "*", "ClusterRoleBinding/"+name
			if o.Kind == "RoleBinding" {
				scope, bname = ns, "RoleBinding/"+ns+"/"+name
			}
			def := K8sClusterRoleKey(cluster, o.RoleRef.Name)
			if o.RoleRef.Kind == "Role" {
				def = K8sRoleKey(cluster, ns, o.RoleRef.Name)
			}
			for _, sub := range o.Subjects {
				p := ""
				switch sub.Kind {
				case "ServiceAccount":
					sns := sub.Namespace
					if sns == "" {
						sns = ns
					}
					p = events.K8sServiceAccountID(cluster, sns, sub.Name)
					if !seen[p] {
						seen[p] = true
						s.Identities = append(s.Identities, Identity{
							ID: p, Provider: "k8s", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT.Label(),
							Name: "system:serviceaccount:" + sns + ":" + sub.Name, Account: cluster,
						})
					}
				case "User":
					p = events.K8sUserID(cluster, sub.Name)
				case "Group":
					p = K8sGroupPrincipal(cluster, sub.Name)
				default:
					continue
				}
				s.Bindings = append(s.Bindings, Binding{Principal: p, Definition: def, Name: bname, Scope: scope})
			}
		}
	}
	return s, nil
}

// K8sClusterRoleKey is the definition key of a ClusterRole.
func K8sClusterRoleKey(cluster, name string) string { return "k8s:" + cluster + ":clusterrole:" + name }

// K8sRoleKey is the definition key of a namespaced Role.
func K8sRoleKey(cluster, namespace, name string) string {
	return "k8s:" + cluster + ":role:" + namespace + ":" + name
}
