package plugin

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// retryTransport retries, with a bounded backoff, the requests that are safe to send
// twice when the API server answers 429, 500, 502, 503 or 504 or the connection fails:
// reads (GET, including the start of a watch) and the self-reviews (whoami, access
// checks), which change nothing. Writes are retried by the executor, which knows which
// of them are idempotent. client-go already honours a Retry-After; this covers the rest.
// Each kind of failure is reported once, not once per request.
type retryTransport struct {
	next    http.RoundTripper
	backoff wait.Backoff
	log     *onceLog
}

// onceLog reports each kind of failure once; the clients of one command share it.
type onceLog struct {
	w      io.Writer
	mu     sync.Mutex
	logged map[string]bool
}

func newOnceLog(w io.Writer) *onceLog { return &onceLog{w: w, logged: map[string]bool{}} }

func newRetryTransport(next http.RoundTripper, log *onceLog) *retryTransport {
	return &retryTransport{next: next, log: log,
		backoff: wait.Backoff{Steps: 6, Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Cap: 5 * time.Second}}
}

func safeToRepeat(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	return r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/selfsubjectaccessreviews") || strings.HasSuffix(r.URL.Path, "/selfsubjectreviews"))
}

func retriableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func (t *retryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !safeToRepeat(r) {
		return t.next.RoundTrip(r)
	}
	b := t.backoff
	for {
		req := r
		if r.Body != nil && r.GetBody != nil {
			body, err := r.GetBody()
			if err != nil {
				return nil, err
			}
			req = r.Clone(r.Context())
			req.Body = body
		}
		resp, err := t.next.RoundTrip(req)
		kind := ""
		switch {
		case err != nil && r.Context().Err() == nil:
			kind = "connection error"
		case err == nil && retriableStatus(resp.StatusCode) && resp.Header.Get("Retry-After") == "":
			kind = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		if kind == "" || b.Steps <= 1 {
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		t.note(kind, r, err)
		select {
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-time.After(b.Step()):
		}
	}
}

func (t *retryTransport) note(kind string, r *http.Request, err error) {
	l := t.log
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged[kind] {
		return
	}
	l.logged[kind] = true
	detail := ""
	if err != nil {
		detail = ": " + err.Error()
	}
	fmt.Fprintf(l.w, "note: the API server answered %s to %s %s%s; retrying with backoff (further retries after %s are not reported)\n", kind, r.Method, r.URL.Path, detail, kind)
}
