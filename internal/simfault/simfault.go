// Package simfault holds the answers the CA simulators (atlassim,
// sectigosim, resellersim, mmsim) give for the injected faults that are
// not a plain status: a request committed and never answered, a 2xx
// whose body is cut short, and an HTML page from something in front of
// the API. Each simulator's Fault names them the same way (Hang,
// Truncate, HTML) and calls these, so the four behave alike.
//
// It is for the simulators only; certd's own code never imports it.
package simfault

import (
	"bytes"
	"fmt"
	"html"
	"net/http"
	"strconv"
)

// Recorder is an http.ResponseWriter that keeps the answer instead of
// sending it, so that a fault can send it damaged, or not at all, after
// the request's effect is committed.
type Recorder struct {
	header http.Header
	Status int
	Body   bytes.Buffer
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{header: http.Header{}} }

// Header implements http.ResponseWriter.
func (r *Recorder) Header() http.Header { return r.header }

// Write implements http.ResponseWriter.
func (r *Recorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r.Body.Write(b)
}

// WriteHeader implements http.ResponseWriter.
func (r *Recorder) WriteHeader(status int) {
	if r.Status == 0 {
		r.Status = status
	}
}

// Hang holds the request open without answering until the client gives
// up (its context ends), then aborts the exchange: the CA accepted the
// request and never answered.
func Hang(req *http.Request) {
	<-req.Context().Done()
	panic(http.ErrAbortHandler)
}

// Truncated sends rec's status and headers with a Content-Length of the
// whole body, then only the first half of the body, then aborts the
// connection (HTTP/1.1) or the stream (HTTP/2): a 2xx cut mid-JSON.
func Truncated(w http.ResponseWriter, rec *Recorder) {
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	body := rec.Body.Bytes()
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	status := rec.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(body[:len(body)/2])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

// HTML answers status (200 when 0) with an HTML error page, as a load
// balancer, WAF or captive proxy in front of the API would.
func HTML(w http.ResponseWriter, status int) {
	if status == 0 {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	text := html.EscapeString(fmt.Sprintf("%d %s", status, http.StatusText(status)))
	_, _ = fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>%s</title></head>\n<body><center><h1>%s</h1></center>\n<hr><center>nginx</center>\n</body></html>\n", text, text)
}
