// Package faultproxy sits between the plugin and kube-apiserver and breaks a share of
// the requests the way a loaded or failing control plane does: 429 with Retry-After,
// 500 and 503, 409 conflicts on writes, and connections reset in the middle of a watch.
// The end-to-end fault tests point the plugin's kubeconfig at it. Faults are drawn from
// a seeded source, so a failing run can be replayed.
package faultproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Config tunes the faults.
type Config struct {
	// Target is kube-apiserver's URL.
	Target string
	// Rate is the share of requests that fail (0.1 to 0.2 in the tests).
	Rate float64
	// WatchRate is the share of watches cut WatchResetAfter after they started.
	WatchRate       float64
	WatchResetAfter time.Duration
	Seed            int64
	Cert            tls.Certificate
	// Refuse answers every request of a kind ("PUT virtualmachines/start") with that HTTP
	// code: virt-api refusing a start for longer than any backoff, say.
	Refuse map[string]int
}

// Counts says what the proxy did.
type Counts struct {
	Requests, Watches, TooMany, Internal, Unavailable, Conflicts, WatchResets, Refused int
	// ByKind counts requests by verb and resource, "PATCH virtualmachines" say (a LIST
	// is a GET of a collection, a WATCH a GET with watch=true).
	ByKind map[string]int
	// Timing spans the requests of each kind that were passed on (watches excluded):
	// where a run's wall time went, seen from the wire.
	Timing map[string]Span
}

// Span is when the requests of one kind ran: the first began, the last ended, and the
// sum of their latencies (Busy / (Last - First) is how many were in flight on average).
type Span struct {
	First, Last time.Time
	Busy, Max   time.Duration
}

// Proxy is a running fault proxy.
type Proxy struct {
	URL string
	cfg Config
	srv *http.Server
	rp  *httputil.ReverseProxy

	mu     sync.Mutex
	rnd    *rand.Rand
	counts Counts
}

// Start listens on a free loopback port.
func Start(cfg Config) (*Proxy, error) {
	target, err := url.Parse(cfg.Target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, rnd: rand.New(rand.NewSource(cfg.Seed)), URL: "https://" + l.Addr().String()}
	p.rp = httputil.NewSingleHostReverseProxy(target)
	p.rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: false}
	p.rp.FlushInterval = -1 // stream watches as they come
	p.srv = &http.Server{Handler: p, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cfg.Cert}}}
	go func() { _ = p.srv.ServeTLS(l, "", "") }()
	return p, nil
}

// Stop closes the proxy.
func (p *Proxy) Stop() { _ = p.srv.Close() }

// Counts returns what the proxy did so far.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.ByKind = make(map[string]int, len(p.counts.ByKind))
	for k, v := range p.counts.ByKind {
		c.ByKind[k] = v
	}
	c.Timing = make(map[string]Span, len(p.counts.Timing))
	for k, v := range p.counts.Timing {
		c.Timing[k] = v
	}
	return c
}

// Reset zeroes the counts, to measure one run.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = Counts{}
}

// kind names a request by verb and resource from its path: /api/v1/namespaces/x/pods/y
// is a GET of pods, /apis/kubevirt.io/v1/namespaces/x/virtualmachines/y/status a PUT
// of virtualmachines/status.
func kind(r *http.Request, watch bool) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// Drop the group and version prefix: api/v1 or apis/GROUP/VERSION.
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return r.Method + " " + r.URL.Path
	}
	if len(parts) > 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	verb := r.Method
	switch {
	case watch:
		verb = "WATCH"
	case r.Method == http.MethodGet && len(parts) == 1:
		verb = "LIST"
	}
	resource := ""
	if len(parts) > 0 {
		resource = parts[0]
	}
	if len(parts) > 2 {
		resource += "/" + parts[2]
	}
	return verb + " " + resource
}

func (p *Proxy) roll() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Requests++
	return p.rnd.Float64()
}

func (p *Proxy) count(f func(*Counts)) {
	p.mu.Lock()
	f(&p.counts)
	p.mu.Unlock()
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":%q,"reason":%q,"code":%d}`, msg, reason, code)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	watch := r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1"
	x := p.roll()
	p.count(func(c *Counts) {
		if c.ByKind == nil {
			c.ByKind = map[string]int{}
		}
		c.ByKind[kind(r, watch)]++
	})
	if watch {
		p.count(func(c *Counts) { c.Watches++ })
	}
	write := r.Method != http.MethodGet
	if code, ok := p.cfg.Refuse[kind(r, watch)]; ok {
		p.count(func(c *Counts) { c.Refused++ })
		status(w, code, http.StatusText(code), "fault proxy: refused")
		return
	}
	switch {
	case watch && x < p.cfg.WatchRate:
		// Let the watch start, then cut it.
		p.count(func(c *Counts) { c.WatchResets++ })
		ctx, cancel := context.WithTimeout(r.Context(), p.cfg.WatchResetAfter)
		defer cancel()
		p.rp.ServeHTTP(w, r.WithContext(ctx))
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
		return
	case watch:
		p.rp.ServeHTTP(w, r)
		return
	case x < p.cfg.Rate*0.3:
		p.count(func(c *Counts) { c.TooMany++ })
		w.Header().Set("Retry-After", "1")
		status(w, http.StatusTooManyRequests, "TooManyRequests", "fault proxy: too many requests, please try again later")
		return
	case x < p.cfg.Rate*0.55:
		p.count(func(c *Counts) { c.Internal++ })
		status(w, http.StatusInternalServerError, "InternalError", "fault proxy: internal error")
		return
	case x < p.cfg.Rate*0.8:
		p.count(func(c *Counts) { c.Unavailable++ })
		status(w, http.StatusServiceUnavailable, "ServiceUnavailable", "fault proxy: the server is currently unable to handle the request")
		return
	case x < p.cfg.Rate && write && !strings.Contains(r.URL.Path, "selfsubject"):
		p.count(func(c *Counts) { c.Conflicts++ })
		status(w, http.StatusConflict, "Conflict", "fault proxy: the object has been modified; please apply your changes to the latest version and try again")
		return
	}
	start := time.Now()
	p.rp.ServeHTTP(w, r)
	end := time.Now()
	p.count(func(c *Counts) {
		if c.Timing == nil {
			c.Timing = map[string]Span{}
		}
		k := kind(r, false)
		s := c.Timing[k]
		if s.First.IsZero() || start.Before(s.First) {
			s.First = start
		}
		if end.After(s.Last) {
			s.Last = end
		}
		s.Busy += end.Sub(start)
		s.Max = max(s.Max, end.Sub(start))
		c.Timing[k] = s
	})
}
