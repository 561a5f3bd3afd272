// Package ocsftest validates OCSF documents against the JSON Schemas in schemas/ocsf, for
// tests of everything that emits them.
package ocsftest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nhiwatch/nhiwatch/schemas"
)

// base is the $id prefix of every schema file.
const base = "https://github.com/nhiwatch/nhiwatch/schemas/"

// Validator checks documents by their class_uid.
type Validator struct {
	byClass map[int]*jsonschema.Schema
}

// New compiles the embedded schemas, with format assertions on (ip_t is checked).
func New(t testing.TB) *Validator {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	files, err := fs.Glob(schemas.OCSF, "ocsf/*.schema.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no OCSF schemas embedded: %v", err)
	}
	for _, name := range files {
		data, err := fs.ReadFile(schemas.OCSF, name)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.AddResource(base+name, doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	v := &Validator{byClass: map[int]*jsonschema.Schema{}}
	for class, name := range schemas.OCSFSchemaFiles {
		s, err := c.Compile(base + name)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		v.byClass[class] = s
	}
	return v
}

// Validate checks one JSON document against the schema of its class_uid.
func (v *Validator) Validate(doc []byte) error {
	var head struct {
		ClassUID int `json:"class_uid"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	s, ok := v.byClass[head.ClassUID]
	if !ok {
		return fmt.Errorf("no schema for class_uid %d", head.ClassUID)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}
