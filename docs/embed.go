// Package docs carries the API contract, docs/openapi.json, into the binary. The file
// beside this one is the only copy: the server serves it and the API tests validate every
// request and answer against it.
package docs

import _ "embed"

//go:embed openapi.json
var openAPI string

// OpenAPI returns the OpenAPI 3.1 document of the JSON API (a fresh copy each call, so no
// caller can change what the others see).
func OpenAPI() []byte { return []byte(openAPI) }
