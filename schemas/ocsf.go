package schemas

import "embed"

// OCSF holds the JSON Schemas (draft 2020-12) of the OCSF 1.3 documents nhiwatch exports:
// ocsf/detection_finding.schema.json (class 2004), ocsf/api_activity.schema.json (6003) and
// ocsf/account_change.schema.json (3001), which reference the shared objects in
// ocsf/objects.schema.json by relative $ref. Each file's $id is its URL in the repository.
//
//go:embed ocsf/*.schema.json
var OCSF embed.FS

// OCSFSchemaFiles names the class schemas in OCSF, by OCSF class_uid.
var OCSFSchemaFiles = map[int]string{
	2004: "ocsf/detection_finding.schema.json",
	3001: "ocsf/account_change.schema.json",
	6003: "ocsf/api_activity.schema.json",
}
