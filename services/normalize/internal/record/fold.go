package record

import "github.com/valyala/fastjson"

// Canon maps the lower-case form of the keys a parser reads to their canonical spelling.
type Canon map[string]string

// NewCanon returns the Canon of keys.
func NewCanon(keys ...string) Canon {
	c := make(Canon, len(keys))
	for _, k := range keys {
		c[lower(k)] = k
	}
	return c
}

// NeedsFolding reports whether v holds a key in lower case whose canonical spelling it lacks,
// as in records some pipelines (Panther) rewrite with lower-case keys.
func (c Canon) NeedsFolding(v *fastjson.Value, canonical ...string) bool {
	for _, k := range canonical {
		if v.Get(k) == nil && v.Get(lower(k)) != nil {
			return true
		}
	}
	return false
}

// Fold renames, in v and every object below it, the keys that differ from a canonical key only
// by case to the canonical spelling, unless the object already has the canonical key.
func (c Canon) Fold(v *fastjson.Value) {
	c.fold(v, 0)
}

func (c Canon) fold(v *fastjson.Value, depth int) {
	if depth > 64 {
		return
	}
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		var renames [][2]string
		o.Visit(func(key []byte, child *fastjson.Value) {
			c.fold(child, depth+1)
			want, ok := c[lower(string(key))]
			if ok && want != string(key) && o.Get(want) == nil {
				renames = append(renames, [2]string{string(key), want})
			}
		})
		for _, r := range renames {
			child := o.Get(r[0])
			o.Del(r[0])
			o.Set(r[1], child)
		}
	case fastjson.TypeArray:
		items, _ := v.Array()
		for _, it := range items {
			c.fold(it, depth+1)
		}
	}
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
