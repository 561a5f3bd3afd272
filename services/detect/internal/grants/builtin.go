package grants

import (
	"embed"
	"encoding/json"
	"fmt"
	"sync"
)

//go:embed builtin/*.json
var builtinFS embed.FS

// AWSManagedPolicyARN is the ARN of an AWS managed policy by name.
func AWSManagedPolicyARN(name string) string { return "arn:aws:iam::aws:policy/" + name }

type builtinEntry struct {
	Name        string      `json:"name"`
	Approximate bool        `json:"approximate"`
	Statements  []Statement `json:"statements"`
	Permissions []string    `json:"permissions"`
	Excluded    []string    `json:"excluded"`
}

var builtinOnce = sync.OnceValues(loadBuiltin)

func loadBuiltin() (map[string]Definition, error) {
	out := map[string]Definition{}
	read := func(name string) ([]builtinEntry, error) {
		b, err := builtinFS.ReadFile("builtin/" + name)
		if err != nil {
			return nil, err
		}
		var es []builtinEntry
		if err := json.Unmarshal(b, &es); err != nil {
			return nil, fmt.Errorf("builtin %s: %w", name, err)
		}
		return es, nil
	}
	aws, err := read("aws_managed_policies.json")
	if err != nil {
		return nil, err
	}
	for _, e := range aws {
		arn := AWSManagedPolicyARN(e.Name)
		out[arn] = Definition{Key: arn, Name: arn, Kind: KindAWSManagedPolicy, Statements: e.Statements}
	}
	gcp, err := read("gcp_roles.json")
	if err != nil {
		return nil, err
	}
	for _, e := range gcp {
		out[e.Name] = Definition{Key: e.Name, Name: e.Name, Kind: KindGCPRole, Permissions: e.Permissions, Excluded: e.Excluded}
	}
	return out, nil
}

// builtinDefinitions returns a fresh map of the built-in definitions. The embedded files
// are part of the binary and tested, so a parse error is a build defect.
func builtinDefinitions() map[string]*Definition {
	defs, err := builtinOnce()
	if err != nil {
		panic(err)
	}
	out := make(map[string]*Definition, len(defs))
	for k, d := range defs {
		d := d
		out[k] = &d
	}
	return out
}
