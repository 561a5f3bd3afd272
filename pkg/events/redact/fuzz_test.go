package redact_test

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events/jsonenc"
	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
)

// FuzzRedact: for any JSON document, Value followed by jsonenc.Append writes valid JSON, and
// secrets planted into the document (under secret field names and as secret-shaped strings)
// never survive; for any text, String removes a planted token it is joined with.
func FuzzRedact(f *testing.F) {
	for _, path := range []string{"../../../testdata/k8s/audit-log/audit2rbac-demo.log", "../../../testdata/gcp/jsonl/gcp_logging.jsonl"} {
		file, err := os.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(file)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			f.Add(append([]byte(nil), sc.Bytes()...))
		}
		file.Close()
	}
	f.Add([]byte(`{"requestObject":{"kind":"Secret","data":{"a":"b"}},"objectRef":{"resource":"secrets"}}`))
	f.Add([]byte(`["Bearer abc", {"token": 1}, "\u0000"]`))
	var p fastjson.Parser
	var a fastjson.Arena
	f.Fuzz(func(t *testing.T, data []byte) {
		plantedText := redact.String(string(data) + " " + jwt + " ")
		if strings.Contains(plantedText, jwt) {
			t.Fatalf("String kept a planted JWT: %q", plantedText)
		}
		v, err := p.ParseBytes(data)
		if err != nil {
			return
		}
		if v.Type() == fastjson.TypeObject {
			a.Reset()
			v.Set("sessionToken", a.NewString(sessionToken))
			v.Set("plantedList", a.NewStringBytes([]byte("xoxb "+slackToken)))
			nested := a.NewObject()
			nested.Set("privateKeyData", a.NewString(secretData))
			nested.Set("note", a.NewString("key: "+pemKey))
			v.Set("plantedNested", nested)
		}
		redact.Value(v, &a)
		out := jsonenc.Append(nil, v)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON after redaction: %q", out)
		}
		if v.Type() == fastjson.TypeObject {
			for _, s := range []string{sessionToken, slackToken, secretData, "MIIEplantedkeymaterial"} {
				if strings.Contains(string(out), s) {
					t.Fatalf("planted %q survived: %s", s, out)
				}
			}
		}
	})
}
