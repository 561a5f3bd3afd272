package normalize

import (
	"testing"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events/jsonenc"
)

// fastjsonArray cuts a JSON array into its items' bytes.
type fastjsonArray struct{ p fastjson.Parser }

func (a *fastjsonArray) split(t *testing.T, data []byte) [][]byte {
	t.Helper()
	v, err := a.p.ParseBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	items, err := v.Array()
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = jsonenc.Append(nil, it)
	}
	return out
}
