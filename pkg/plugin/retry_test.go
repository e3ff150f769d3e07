package plugin

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type scripted struct {
	codes []int
	calls int
}

func (s *scripted) RoundTrip(*http.Request) (*http.Response, error) {
	code := http.StatusOK
	if s.calls < len(s.codes) {
		code = s.codes[s.calls]
	}
	s.calls++
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}"))}, nil
}

func TestRetryTransportRepeatsOnlySafeRequestsAndReportsEachKindOnce(t *testing.T) {
	var log bytes.Buffer
	next := &scripted{codes: []int{503, 500, 503}}
	rt := newRetryTransport(next, newOnceLog(&log))
	rt.backoff.Duration = time.Millisecond
	req, _ := http.NewRequest(http.MethodGet, "https://api/api/v1/nodes", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 || next.calls != 4 {
		t.Fatalf("GET: %v %v after %d calls", resp, err, next.calls)
	}
	if strings.Count(log.String(), "HTTP 503") != 2 || strings.Count(log.String(), "note:") != 2 {
		t.Fatalf("each kind once:\n%s", log.String())
	}
	// A write is the executor's to retry: it knows whether it is idempotent.
	next = &scripted{codes: []int{500}}
	rt = newRetryTransport(next, newOnceLog(&log))
	req, _ = http.NewRequest(http.MethodPost, "https://api/apis/kubevirt.io/v1/namespaces/a/virtualmachineinstancemigrations", strings.NewReader("{}"))
	if resp, _ := rt.RoundTrip(req); resp.StatusCode != 500 || next.calls != 1 {
		t.Fatalf("POST retried: %d calls", next.calls)
	}
	// The retries are bounded.
	next = &scripted{codes: []int{503, 503, 503, 503, 503, 503, 503, 503}}
	rt = newRetryTransport(next, newOnceLog(io.Discard))
	rt.backoff.Duration = time.Millisecond
	req, _ = http.NewRequest(http.MethodGet, "https://api/api/v1/nodes", nil)
	if resp, _ := rt.RoundTrip(req); resp.StatusCode != 503 || next.calls != 6 {
		t.Fatalf("unbounded: %d calls, last %d", next.calls, resp.StatusCode)
	}
}
