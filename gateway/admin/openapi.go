package admin

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's description (OpenAPI 3.1); openapi_test.go holds
// it to the routes Handler registers and its examples to its schemas.
//
//go:embed openapi.yaml
var openAPI []byte

func (a *API) openAPIRoute(mux *routeMux) {
	mux.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(openAPI)
	})
}
