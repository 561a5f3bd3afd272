package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
)

// dashboard is the part of a Grafana dashboard JSON the tests read.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	Query      any        `json:"query"`
	Datasource datasource `json:"datasource"`
	Multi      bool       `json:"multi"`
	IncludeAll bool       `json:"includeAll"`
	AllValue   string     `json:"allValue"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	Title      string     `json:"title"`
	Type       string     `json:"type"`
	Datasource datasource `json:"datasource"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Datasource datasource `json:"datasource"`
		RawSQL     string     `json:"rawSql"`
		Expr       string     `json:"expr"`
		Format     *int       `json:"format"`
	} `json:"targets"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("compose/grafana/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	out := map[string]dashboard{}
	uids := map[string]string{}
	for _, f := range files {
		var d dashboard
		if err := json.Unmarshal([]byte(readFile(t, f)), &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: uid %q, title %q, %d panels", f, d.UID, d.Title, len(d.Panels))
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %s", f, other, d.UID)
		}
		uids[d.UID] = f
		out[filepath.Base(f)] = d
	}
	return out
}

// The time range and interval the tests expand Grafana macros with.
var (
	testTo       = time.Now().Add(time.Hour).Truncate(time.Second)
	testFrom     = testTo.Add(-45 * 24 * time.Hour)
	testInterval = time.Hour
)

var (
	macroWithArg = regexp.MustCompile(`\$__(timeFilter|timeFilter_ms|dateFilter|timeInterval)\(([^)]*)\)`)
	macroBare    = regexp.MustCompile(`\$__(fromTime|toTime|interval_s)\b`)
	varRef       = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\$(\w+)`)
)

// expandMacros replaces the grafana-clickhouse-datasource macros with what the plugin
// sends ClickHouse (its pkg/macros): $__timeFilter(c) is "c >= toDateTime(from) AND c <=
// toDateTime(to)", $__fromTime is toDateTime(from), and so on.
func expandMacros(t *testing.T, sql string) string {
	t.Helper()
	dt := func(ts time.Time) string { return fmt.Sprintf("toDateTime(%d)", ts.Unix()) }
	d := func(ts time.Time) string { return fmt.Sprintf("toDate('%s')", ts.UTC().Format("2006-01-02")) }
	sql = macroWithArg.ReplaceAllStringFunc(sql, func(m string) string {
		sub := macroWithArg.FindStringSubmatch(m)
		col := strings.TrimSpace(sub[2])
		switch sub[1] {
		case "timeFilter":
			return fmt.Sprintf("%s >= %s AND %s <= %s", col, dt(testFrom), col, dt(testTo))
		case "timeFilter_ms":
			return fmt.Sprintf("%s >= fromUnixTimestamp64Milli(%d) AND %s <= fromUnixTimestamp64Milli(%d)", col, testFrom.UnixMilli(), col, testTo.UnixMilli())
		case "dateFilter":
			return fmt.Sprintf("%s >= %s AND %s <= %s", col, d(testFrom), col, d(testTo))
		default: // timeInterval: toStartOfInterval, which ClickHouse 18.16 lacks; dashboards avoid it.
			return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", col, int(testInterval.Seconds()))
		}
	})
	return macroBare.ReplaceAllStringFunc(sql, func(m string) string {
		switch m {
		case "$__fromTime":
			return dt(testFrom)
		case "$__toTime":
			return dt(testTo)
		default:
			return strconv.Itoa(int(testInterval.Seconds()))
		}
	})
}

// expandVars replaces dashboard variables with values, formatted as Grafana does for the
// formats the dashboards use (raw, singlequote).
func expandVars(t *testing.T, sql string, values map[string][]string) string {
	t.Helper()
	return varRef.ReplaceAllStringFunc(sql, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name, format := sub[1], sub[2]
		if name == "" {
			name = sub[3]
		}
		vals, ok := values[name]
		if !ok {
			t.Errorf("query uses unknown variable $%s", name)
			return m
		}
		switch format {
		case "singlequote":
			q := make([]string, len(vals))
			for i, v := range vals {
				q[i] = "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
			}
			return strings.Join(q, ",")
		case "":
			return strings.Join(vals, ",")
		default:
			t.Errorf("variable format %q not supported by the test", format)
			return m
		}
	})
}

// TestDashboardQueriesRunOnClickHouse runs every ClickHouse query of every dashboard —
// variable queries and panel targets, with the variables set to All and to a value — on the
// test ClickHouse over the migrated schema with a small data set, and requires each panel to
// return rows.
func TestDashboardQueriesRunOnClickHouse(t *testing.T) {
	conn, _ := chdbtest.Open(t)
	seed(t, conn)
	ctx := context.Background()
	for file, d := range loadDashboards(t) {
		t.Run(strings.TrimSuffix(file, ".json"), func(t *testing.T) {
			// Resolve the variables: query variables from ClickHouse, custom ones from their list.
			all := map[string][]string{}
			one := map[string][]string{}
			for _, v := range d.Templating.List {
				var options []string
				switch v.Type {
				case "query":
					if v.Datasource.UID != "clickhouse" {
						t.Fatalf("variable %s queries %s", v.Name, v.Datasource.UID)
					}
					q, _ := v.Query.(string)
					options = queryStrings(t, conn, expandMacros(t, q))
				case "custom":
					q, _ := v.Query.(string)
					options = strings.Split(q, ",")
				default:
					t.Fatalf("variable %s has type %s", v.Name, v.Type)
				}
				if len(options) == 0 {
					t.Fatalf("variable %s has no options over the test data", v.Name)
				}
				one[v.Name] = options[:1]
				all[v.Name] = options[:1]
				if v.IncludeAll {
					if v.AllValue == "" {
						t.Errorf("variable %s: All without allValue expands to an empty IN () when there is no data", v.Name)
					}
					all[v.Name] = []string{v.AllValue}
				} else if cur, ok := v.Current.Value.(string); ok && cur != "" {
					all[v.Name], one[v.Name] = []string{cur}, []string{cur}
				}
			}
			queries := 0
			for _, p := range d.Panels {
				for _, tg := range p.Targets {
					if tg.Datasource.UID != p.Datasource.UID {
						t.Errorf("panel %q: target data source %s differs from the panel's %s", p.Title, tg.Datasource.UID, p.Datasource.UID)
					}
					if tg.Datasource.UID != "clickhouse" {
						continue
					}
					queries++
					if tg.Format == nil {
						t.Errorf("panel %q has no format", p.Title)
					}
					passes := map[string]map[string][]string{"all": all}
					for name, v := range one {
						values := map[string][]string{}
						for k, a := range all {
							values[k] = a
						}
						values[name] = v
						passes[name+"="+v[0]] = values
					}
					for label, values := range passes {
						sql := expandVars(t, expandMacros(t, tg.RawSQL), values)
						if strings.Contains(sql, "$") {
							t.Errorf("panel %q: unexpanded macro or variable in\n%s", p.Title, sql)
							continue
						}
						rows, err := countRows(ctx, conn, sql)
						if err != nil {
							t.Errorf("panel %q (%s): %v\n%s", p.Title, label, err, sql)
							continue
						}
						if rows == 0 {
							t.Errorf("panel %q (%s) returned no rows over the test data\n%s", p.Title, label, sql)
						}
					}
				}
			}
			if d.UID != "nhiwatch-pipeline" && queries == 0 {
				t.Error("no ClickHouse query")
			}
		})
	}
}

func queryStrings(t *testing.T, conn driver.Conn, sql string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func countRows(ctx context.Context, conn driver.Conn, sql string) (int, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// seed writes a small, consistent data set: a CI role with an admin grant it never uses
// and a denied attempt, a service account, a dormant access key and a session with a long
// idle gap, and findings of two detectors.
func seed(t *testing.T, conn driver.Conn) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	const (
		role = "aws:arn:aws:iam::111122223333:role/ci-deployer"
		sa   = "gcp:builder@proj.iam.gserviceaccount.com"
	)
	insert(t, conn, "INSERT INTO events (event_id, provider, event_time, identity_id, identity_kind, credential_id, credential_type, permission, outcome, inserted_at)",
		[]any{"e1", "aws", now.Add(-400 * day), role, "workload_role", "aws:key:AKIAOLD", "access_key", "s3:GetObject", "allowed", now},
		[]any{"e2", "aws", now.Add(-200 * day), role, "workload_role", "aws:key:AKIAOLD", "access_key", "s3:GetObject", "allowed", now},
		[]any{"e3", "aws", now.Add(-20 * day), role, "workload_role", "aws:session:ASIA1", "session", "s3:GetObject", "allowed", now},
		[]any{"e4", "aws", now.Add(-2 * day), role, "workload_role", "aws:session:ASIA1", "session", "s3:GetObject", "allowed", now},
		[]any{"e5", "gcp", now.Add(-1 * day), sa, "service_account", "gcp:key:k1", "service_account_key", "storage.objects.get", "allowed", now},
	)
	insert(t, conn, "INSERT INTO findings (finding_id, detector, severity, severity_rank, title, summary, provider, identity_id, identity_kind, credential_id, owner, team, event_time, status, version)",
		[]any{"f1", "privilege_expansion", "critical", uint8(5), "Admin policy attached", "ci-deployer attached AdministratorAccess to itself", "aws", role, "workload_role", "aws:session:ASIA1", "platform", "infra", now.Add(-2 * day), "open", uint64(1)},
		[]any{"f2", "dormant_credential_reuse", "high", uint8(4), "Dormant key used", "AKIAOLD used after 200 days", "aws", role, "workload_role", "aws:key:AKIAOLD", "", "", now.Add(-3 * day), "open", uint64(1)},
	)
	insert(t, conn, "INSERT INTO grants (identity_id, provider, identity_kind, permission, grant_name, via, scope, effect, admin, active, source, updated_at, version)",
		[]any{role, "aws", "workload_role", "s3:GetObject", "S3Read", "attached", "*", "allow", uint8(0), uint8(1), "snapshot", now, uint64(1)},
		[]any{role, "aws", "workload_role", "iam:*", "AdministratorAccess", "attached", "*", "allow", uint8(1), uint8(1), "snapshot", now, uint64(1)},
		[]any{sa, "gcp", "service_account", "storage.objects.get", "roles/storage.objectViewer", "binding", "projects/proj", "allow", uint8(0), uint8(1), "snapshot", now, uint64(1)},
	)
	insert(t, conn, "INSERT INTO permission_usage_log (event_id, event_time, identity_id, provider, identity_kind, permission, outcome, sensitive, credential_id)",
		[]any{"e4", now.Add(-2 * day), role, "aws", "workload_role", "s3:GetObject", "used", uint8(0), "aws:session:ASIA1"},
		[]any{"e6", now.Add(-2 * day), role, "aws", "workload_role", "iam:CreateUser", "denied", uint8(1), "aws:session:ASIA1"},
		[]any{"e5", now.Add(-1 * day), sa, "gcp", "service_account", "storage.objects.get", "used", uint8(0), "gcp:key:k1"},
	)
	insert(t, conn, "INSERT INTO grant_usage_log (event_id, event_time, identity_id, grant_name, via, permission, scope, used_permission)",
		[]any{"e4", now.Add(-2 * day), role, "S3Read", "attached", "s3:GetObject", "*", "s3:GetObject"},
		[]any{"e5", now.Add(-1 * day), sa, "roles/storage.objectViewer", "binding", "storage.objects.get", "projects/proj", "storage.objects.get"},
	)
	insert(t, conn, "INSERT INTO grant_credentials (credential_id, identity_id, active, last_rotated, last_used, source, version)",
		[]any{"aws:key:AKIAOLD", role, uint8(1), now.Add(-400 * day), now.Add(-200 * day), "credential_report", uint64(1)},
	)
}

func insert(t *testing.T, conn driver.Conn, stmt string, rows ...[]any) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), stmt)
	if err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// TestDashboardMetricsExist checks every metric a Prometheus panel charts against the
// instruments the Go code creates, with the names the OpenTelemetry Prometheus exporter
// gives them (counters _total; histograms _bucket, _sum, _count).
func TestDashboardMetricsExist(t *testing.T) {
	exported := exportedMetrics(t, "..")
	metricRef := regexp.MustCompile(`\bnhiwatch_[a-z0-9_]+`)
	charted := 0
	for file, d := range loadDashboards(t) {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				if tg.Datasource.UID != "prometheus" {
					continue
				}
				if tg.Expr == "" {
					t.Errorf("%s: panel %q has an empty expression", file, p.Title)
				}
				for _, name := range metricRef.FindAllString(tg.Expr, -1) {
					charted++
					if !exported[name] {
						t.Errorf("%s: panel %q charts %s, which no instrument exports", file, p.Title, name)
					}
				}
			}
		}
	}
	if charted == 0 {
		t.Error("no dashboard charts a Prometheus metric")
	}
}

// exportedMetrics finds the OpenTelemetry instruments created in the Go sources under root
// (meter.Int64Counter("nhiwatch_…", …) and the like, names given literally or as constants)
// and returns their Prometheus series names.
func exportedMetrics(t *testing.T, root string) map[string]bool {
	t.Helper()
	kinds := map[string]string{
		"Int64Counter": "counter", "Float64Counter": "counter",
		"Int64UpDownCounter": "gauge", "Float64UpDownCounter": "gauge",
		"Int64Histogram": "histogram", "Float64Histogram": "histogram",
		"Int64Gauge": "gauge", "Float64Gauge": "gauge",
		"Int64ObservableGauge": "gauge", "Float64ObservableGauge": "gauge",
		"Int64ObservableCounter": "counter", "Float64ObservableCounter": "counter",
		"Int64ObservableUpDownCounter": "gauge", "Float64ObservableUpDownCounter": "gauge",
	}
	consts := map[string]string{}
	type use struct {
		arg  ast.Expr
		kind string
	}
	var uses []use
	// wrappers are local helpers such as counter := func(name, desc string) … that pass
	// their first parameter to an instrument constructor; calls to them are uses too.
	wrappers := map[string]string{}
	var wrapperCalls []*ast.CallExpr
	wrapperKind := func(params *ast.FieldList, body *ast.BlockStmt) string {
		if params == nil || len(params.List) == 0 || len(params.List[0].Names) == 0 || body == nil {
			return ""
		}
		first := params.List[0].Names[0].Name
		kind := ""
		ast.Inspect(body, func(n ast.Node) bool {
			if c, ok := n.(*ast.CallExpr); ok && len(c.Args) > 0 {
				if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
					if id, ok := c.Args[0].(*ast.Ident); ok && id.Name == first && kinds[sel.Sel.Name] != "" {
						kind = kinds[sel.Sel.Name]
					}
				}
			}
			return true
		})
		return kind
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			switch e.Name() {
			case ".git", "testdata", "node_modules", ".clickhouse", "data":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if i < len(n.Values) {
						if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "nhiwatch_") {
								consts[name.Name] = s
							}
						}
					}
				}
			case *ast.AssignStmt:
				for i, rhs := range n.Rhs {
					if fl, ok := rhs.(*ast.FuncLit); ok && i < len(n.Lhs) {
						if id, ok := n.Lhs[i].(*ast.Ident); ok {
							if k := wrapperKind(fl.Type.Params, fl.Body); k != "" {
								wrappers[id.Name] = k
							}
						}
					}
				}
			case *ast.FuncDecl:
				if k := wrapperKind(n.Type.Params, n.Body); k != "" {
					wrappers[n.Name.Name] = k
				}
			case *ast.CallExpr:
				if len(n.Args) == 0 {
					return true
				}
				switch fun := n.Fun.(type) {
				case *ast.SelectorExpr:
					if kind, ok := kinds[fun.Sel.Name]; ok {
						uses = append(uses, use{n.Args[0], kind})
					}
				case *ast.Ident:
					wrapperCalls = append(wrapperCalls, n)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range wrapperCalls {
		if kind, ok := wrappers[c.Fun.(*ast.Ident).Name]; ok {
			uses = append(uses, use{c.Args[0], kind})
		}
	}
	out := map[string]bool{"up": true}
	for _, u := range uses {
		var name string
		switch a := u.arg.(type) {
		case *ast.BasicLit:
			name, _ = strconv.Unquote(a.Value)
		case *ast.Ident:
			name = consts[a.Name]
		case *ast.SelectorExpr:
			name = consts[a.Sel.Name]
		}
		if !strings.HasPrefix(name, "nhiwatch_") {
			continue
		}
		switch u.kind {
		case "counter":
			out[name+"_total"] = true
		case "histogram":
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[name+s] = true
			}
		default:
			out[name] = true
		}
	}
	if len(out) < 10 {
		var names []string
		for n := range out {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Fatalf("found only %v in the Go sources", names)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("%s is not the repository root: %v", root, err)
	}
	return out
}
