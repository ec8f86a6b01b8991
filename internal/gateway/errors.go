package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// writeError answers with the error envelope Azure OpenAI and OpenAI
// clients parse: {"error":{"code","message"}} with the code as a string, as
// Azure sends it (azure-contracts.md §7.5).
func writeError(w http.ResponseWriter, status int, code, message string) {
	if code == "" {
		code = strconv.Itoa(status)
	}
	body, _ := json.Marshal(struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{Error: struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, message}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// statusClientClosed is the status recorded when the caller went away
// before the response was complete (nginx's convention).
const statusClientClosed = 499
