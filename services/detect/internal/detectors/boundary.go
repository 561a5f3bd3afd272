package detectors

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/netclass"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/state"
)

// boundary raises out_of_boundary findings: the identity acted outside the boundary the
// catalog declares for it, a workload credential was used away from the workload it was
// issued to, or — once its learning period is over — the identity acted from a network,
// region, client family or cluster its own history never showed.
func (d *Detector) boundary(c *ctx) {
	if c.rule != nil && c.rule.Boundary != nil {
		d.declared(c, c.rule.Boundary)
	}
	agentReported := d.workload(c)
	d.learned(c, agentReported)
}

// violation is one dimension of a boundary that an event broke.
type violation struct {
	dim, value, want string
}

func (d *Detector) declared(c *ctx, b *catalog.Boundary) {
	ev := c.ev
	net := ev.GetNetwork()
	var vs []violation
	if len(b.CIDRs) > 0 && c.hasIP {
		in := false
		for _, p := range b.CIDRs {
			if p.Contains(c.net.Addr) {
				in = true
				break
			}
		}
		if !in {
			vs = append(vs, violation{"network", c.net.Prefix.String(), joinPrefixes(b)})
		}
	}
	if len(b.Regions) > 0 && net.GetRegion() != "" && !anyGlob(b.Regions, net.GetRegion(), false) {
		vs = append(vs, violation{"region", net.GetRegion(), strings.Join(b.Regions, ", ")})
	}
	if len(b.VPCEndpoints) > 0 && c.hasIP && !slices.Contains(b.VPCEndpoints, net.GetVpcEndpoint()) {
		got := net.GetVpcEndpoint()
		if got == "" {
			got = "no VPC endpoint"
		}
		vs = append(vs, violation{"vpc_endpoint", got, strings.Join(b.VPCEndpoints, ", ")})
	}
	if cl := eventCluster(ev); len(b.Clusters) > 0 && cl != "" && !anyGlob(b.Clusters, cl, false) {
		vs = append(vs, violation{"cluster", cl, strings.Join(b.Clusters, ", ")})
	}
	if len(b.Namespaces) > 0 {
		for _, r := range ev.Resources {
			if r.Namespace != "" && !anyGlob(b.Namespaces, r.Namespace, false) {
				vs = append(vs, violation{"namespace", r.Namespace, strings.Join(b.Namespaces, ", ")})
				break
			}
		}
	}
	if ua := net.GetUserAgent(); len(b.UserAgents) > 0 && ua != "" && c.class != netclass.AgentService && !anyGlob(b.UserAgents, ua, true) {
		vs = append(vs, violation{"user_agent", c.family, strings.Join(b.UserAgents, ", ")})
	}
	if b.Hours != nil && !b.Hours.Contains(eventTime(ev)) {
		tz := b.Hours.Location.String()
		vs = append(vs, violation{"hours", eventTime(ev).In(b.Hours.Location).Format("15:04") + " " + tz, b.Hours.Text + " " + tz})
	}
	if len(vs) == 0 {
		return
	}
	sev := events.Severity_SEVERITY_MEDIUM
	if len(vs) >= 2 || vs[0].dim == "network" && !c.net.Private {
		sev = events.Severity_SEVERITY_HIGH
	}
	if c.s.Power() >= PowerEscalate {
		sev = raise(sev, 1)
	}
	var parts, causes []string
	fields := map[string]string{}
	for _, v := range vs {
		parts = append(parts, v.dim+" "+v.value+" (declared: "+v.want+")")
		causes = append(causes, v.dim+"="+v.value)
		fields[v.dim] = v.value
	}
	who := describe(ev.Identity, c.kind)
	act := actionOf(ev)
	d.emit(c, draft{
		detector: OutOfBoundary,
		severity: sev,
		cause:    "declared:" + strings.Join(causes, ";"),
		title:    principalOrName(ev) + " acted outside its declared boundary: " + strings.Join(dims(vs), ", "),
		summary: who + " called " + act + " " + from(ev) + ", outside the boundary its catalog entry declares: " + strings.Join(parts, "; ") +
			". Use outside the declared place usually means the credential was copied off the workload it belongs to.",
		recommendation: "Confirm with the owner whether the boundary changed; if so, update the catalog. If not, treat the credential as leaked: " +
			"revoke or rotate it and review every call made from outside the boundary.",
		owasp:  []string{NHI2SecretLeakage, NHI8EnvironmentIsolation},
		mitre:  []string{"T1078.004"},
		fields: fields,
	})
}

// workload checks a workload credential against where it was issued: an EC2 instance-role
// session from outside AWS or from a client no workload uses, a Kubernetes service account
// from a public address or another cluster. It reports whether it raised a finding about
// the client, so the learned check does not repeat it.
func (d *Detector) workload(c *ctx) bool {
	ev := c.ev
	cred := ev.GetCredential()
	var reasons, causes, mitre []string
	agent, humanClient := false, false
	switch {
	case cred.GetDelivery() == "ec2_role_delivery":
		instance := cred.GetIssuedTo()
		if instance == "" {
			instance = "its instance"
		}
		mitre = []string{"T1552.005", "T1078.004"}
		if c.hasIP && !c.net.Private && d.env.AWSRanges != nil && !d.env.AWSRanges.Contains(c.net.Addr) {
			reasons = append(reasons, "it was issued to EC2 instance "+instance+" but used from "+c.net.Addr.String()+", an address outside AWS")
			causes = append(causes, "outside_aws")
		}
		if unusualClient(c.class) && !c.s.HasAgent(netclass.Hash32(c.family)) {
			ua := c.family
			if ua == "" {
				ua = "an empty user agent"
			}
			reasons = append(reasons, "it was issued to EC2 instance "+instance+" but used by client "+quote(ua)+", not an AWS SDK, CLI or agent a workload runs")
			causes = append(causes, "unusual_client="+c.family)
			agent = true
			humanClient = c.class == netclass.AgentBrowser || c.class == netclass.AgentConsole
		}
	case ev.Provider == events.Provider_PROVIDER_K8S && strings.Contains(ev.Identity.Id, ":system:serviceaccount:"):
		mitre = []string{"T1528", "T1078.004"}
		if c.hasIP && !c.net.Private {
			reasons = append(reasons, "a Kubernetes service account token was used from public address "+c.net.Addr.String()+", not from inside the cluster")
			causes = append(causes, "public_address="+c.net.Prefix.String())
		}
		if home := k8sHomeCluster(ev.Identity.Id); home != "" {
			if cl := ev.GetNetwork().GetCluster(); cl != "" && cl != home {
				reasons = append(reasons, "a service account of cluster "+home+" was used in cluster "+cl)
				causes = append(causes, "other_cluster="+cl)
			}
		}
	}
	if len(reasons) == 0 {
		return false
	}
	owasp := []string{NHI2SecretLeakage}
	if humanClient {
		owasp = append(owasp, NHI10HumanUse)
	}
	sev := events.Severity_SEVERITY_HIGH
	if len(reasons) > 1 || c.s.Power() >= PowerEscalate {
		sev = events.Severity_SEVERITY_CRITICAL
	}
	who := describe(ev.Identity, c.kind)
	d.emit(c, draft{
		detector: OutOfBoundary,
		severity: sev,
		cause:    "workload:" + strings.Join(causes, ";"),
		title:    "Workload credential of " + principalOrName(ev) + " used away from its workload",
		summary: who + " called " + actionOf(ev) + " " + from(ev) + ": " + strings.Join(reasons, "; ") +
			". Workload credentials are fetched by the workload itself; use elsewhere means they were stolen (for example from the instance metadata service or a mounted token).",
		recommendation: "Revoke the active sessions of the role or rotate the token at once (for an IAM role: an inline deny on aws:TokenIssueTime), " +
			"find how the credential left the workload (SSRF, a compromised host, a leaked token file), and review every call it made.",
		owasp: owasp,
		mitre: mitre,
		fields: map[string]string{
			"delivery": cred.GetDelivery(), "issued_to": cred.GetIssuedTo(), "client_family": c.family, "client_class": c.class,
			"reason": strings.Join(causes, ";"),
		},
	})
	return agent
}

// unusualClient reports whether a client class is one a workload credential should not be
// used from: anything but SDKs, CLIs and the provider's own services.
func unusualClient(class string) bool {
	return class != netclass.AgentSDK && class != netclass.AgentService
}

func (d *Detector) learned(c *ctx, agentReported bool) {
	ev := c.ev
	cat := c.cat
	period := uint32(cat.Defaults.LearningPeriod.Seconds())
	if !c.s.Learned(c.t, period, cat.Defaults.LearningMinEvents) {
		return
	}
	s := c.s
	var vs []violation
	if c.hasIP && s.Sat&state.SatNets == 0 && !s.HasNet(c.net.PrefixKey()) {
		vs = append(vs, violation{"network", c.net.Prefix.String(), ""})
	}
	if r := ev.GetNetwork().GetRegion(); r != "" && s.Sat&state.SatRegions == 0 && !s.HasRegion(netclass.Hash32(r)) {
		vs = append(vs, violation{"region", r, ""})
	}
	if c.family != "" && c.class != netclass.AgentService && !agentReported && s.Sat&state.SatAgents == 0 && !s.HasAgent(netclass.Hash32(c.family)) {
		vs = append(vs, violation{"client", c.family, ""})
	}
	if cl := ev.GetNetwork().GetCluster(); cl != "" && s.Sat&state.SatClusters == 0 && !s.HasCluster(netclass.Hash32(cl)) {
		vs = append(vs, violation{"cluster", cl, ""})
	}
	if len(vs) == 0 {
		return
	}
	sev := events.Severity_SEVERITY_LOW
	switch {
	case len(vs) >= 3:
		sev = events.Severity_SEVERITY_HIGH
	case len(vs) == 2:
		sev = events.Severity_SEVERITY_MEDIUM
	}
	owasp := []string{NHI2SecretLeakage}
	if c.class == netclass.AgentBrowser || c.class == netclass.AgentConsole {
		sev = raise(sev, 1)
		owasp = append(owasp, NHI10HumanUse)
	}
	if s.Power() >= PowerEscalate {
		sev = raise(sev, 1)
	}
	var parts, causes []string
	fields := map[string]string{}
	for _, v := range vs {
		parts = append(parts, "a new "+v.dim+" "+v.value)
		causes = append(causes, v.dim+"="+v.value)
		fields[v.dim] = v.value
	}
	learnedDays := (c.t - s.Activity.First()) / 86400
	d.emit(c, draft{
		detector: OutOfBoundary,
		severity: sev,
		cause:    "learned:" + strings.Join(causes, ";"),
		title:    principalOrName(ev) + " acted from " + strings.Join(parts, ", "),
		summary: describe(ev.Identity, c.kind) + " called " + actionOf(ev) + " " + from(ev) + ": " + strings.Join(parts, ", ") +
			", never seen in its " + itoa(int(learnedDays)) + " days and " + itoa(int(s.Events)) + " events of history. " +
			"A non-human identity normally acts from the same few places; a new one can mean its credential is used elsewhere.",
		recommendation: "Ask the owner whether the workload moved or gained a new client. If not, treat the credential as exposed: rotate it " +
			"and review the calls from the new place. Declare the expected boundary in the catalog to make the check exact.",
		owasp:  owasp,
		mitre:  []string{"T1078.004"},
		fields: fields,
	})
}

// learn adds the event's network, region, client family and cluster to the identity's
// learned boundary.
func learn(c *ctx) {
	s := c.s
	if c.hasIP {
		s.LearnNet(c.net.PrefixKey())
	}
	if r := c.ev.GetNetwork().GetRegion(); r != "" {
		s.LearnRegion(netclass.Hash32(r))
	}
	if c.family != "" {
		s.LearnAgent(netclass.Hash32(c.family))
	}
	if cl := c.ev.GetNetwork().GetCluster(); cl != "" {
		s.LearnCluster(netclass.Hash32(cl))
	}
}

func dims(vs []violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.dim
	}
	return out
}

func joinPrefixes(b *catalog.Boundary) string {
	s := make([]string, len(b.CIDRs))
	for i, p := range b.CIDRs {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func anyGlob(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold && catalog.GlobFold(p, s) || !fold && catalog.Glob(p, s) {
			return true
		}
	}
	return false
}

// eventCluster is the Kubernetes or GKE cluster an event ran in.
func eventCluster(ev *events.Event) string {
	if c := ev.GetNetwork().GetCluster(); c != "" {
		return c
	}
	if ev.Provider == events.Provider_PROVIDER_K8S {
		return ev.Account
	}
	return ""
}

// k8sHomeCluster is the cluster in a Kubernetes identity id.
func k8sHomeCluster(id string) string {
	rest, ok := strings.CutPrefix(id, "k8s:")
	if !ok {
		return ""
	}
	cl, _, _ := strings.Cut(rest, ":")
	return cl
}

func actionOf(ev *events.Event) string {
	if p := ev.GetAction().GetPermission(); p != "" {
		return p
	}
	return ev.GetAction().GetName()
}

func principalOrName(ev *events.Event) string {
	if n := ev.Identity.GetName(); n != "" {
		return n
	}
	return principalName(ev.Identity.GetId())
}

func itoa(v int) string { return strconv.Itoa(v) }

func eventTime(ev *events.Event) time.Time { return time.Unix(0, ev.TimeUnixNano) }
