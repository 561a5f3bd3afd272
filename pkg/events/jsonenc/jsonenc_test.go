package jsonenc_test

import (
	"encoding/json"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events/jsonenc"
)

func TestAppendRoundTrips(t *testing.T) {
	inputs := []string{
		`{"a":"x\u0003y","b":[1,2.5e3,true,false,null],"c":{"d":"\"quoted\" \\ back"}}`,
		`{"fingerprint":"/\ufffd/\ufffd\ufffd\u0003\ufffd","e":"é \u2028 \n\t"}`,
		`[]`, `{}`, `"s"`, `-0.1`,
		`{"k\u0001ey":"v"}`,
	}
	for _, in := range inputs {
		v, err := fastjson.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		// Touch every string so fastjson unescapes it in place, as redaction does.
		touch(v)
		out := jsonenc.Append(nil, v)
		var want, got any
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Append(%s) = %s: not valid JSON: %v", in, out, err)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if string(wb) != string(gb) {
			t.Errorf("round trip changed the value:\n in %s\nout %s", wb, gb)
		}
	}
}

func TestAppendStringInvalidUTF8(t *testing.T) {
	out := jsonenc.AppendString(nil, []byte("a\xffb"))
	if string(out) != `"a\ufffdb"` {
		t.Errorf("got %s", out)
	}
}

func touch(v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeString:
		v.StringBytes()
	case fastjson.TypeObject:
		o, _ := v.Object()
		o.Visit(func(_ []byte, c *fastjson.Value) { touch(c) })
	case fastjson.TypeArray:
		a, _ := v.Array()
		for _, c := range a {
			touch(c)
		}
	}
}

// fastjson reads numbers JSON does not allow; Append must still write valid JSON.
func TestAppendLenientNumbers(t *testing.T) {
	for _, in := range []string{`[00]`, `[-01.5]`, `[1.]`, `[.5]`, `[1e5]`, `[-0]`, `[1E+2]`, `[0.25e-3]`, `[nan]`, `[inf]`, `[-inf]`} {
		v, err := fastjson.Parse(in)
		if err != nil {
			continue
		}
		out := jsonenc.Append(nil, v)
		if !json.Valid(out) {
			t.Errorf("Append(%s) = %s, not valid JSON", in, out)
		}
	}
}
