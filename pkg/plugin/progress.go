package plugin

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
)

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// progress renders executor events: a live status line on a terminal, plain
// timestamped lines otherwise (CI logs, pipes).
type progress struct {
	w       io.Writer
	live    bool
	start   time.Time
	mu      sync.Mutex
	last    executor.Event
	failed  int
	tier    int
	stopped chan struct{}
	wg      sync.WaitGroup
}

func newProgress(w io.Writer, mode string, total int) *progress {
	live := mode == "bar"
	if mode == "auto" {
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			live = true
		}
	}
	p := &progress{w: w, live: live, start: time.Now(), stopped: make(chan struct{})}
	p.last.Total = total
	if live {
		p.wg.Add(1)
		go p.tick()
	}
	return p
}

func (p *progress) tick() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stopped:
			return
		case <-t.C:
			p.mu.Lock()
			p.status()
			p.mu.Unlock()
		}
	}
}

// status redraws the live line; callers hold mu.
func (p *progress) status() {
	e := p.last
	fmt.Fprintf(p.w, "\r\033[K[tier %s] %d/%d done, %d in flight, %d failed, %s elapsed",
		tierString(p.tier), e.Done, e.Total, e.InFlight, p.failed, time.Since(p.start).Round(time.Second))
}

func (p *progress) event(e executor.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Total > 0 {
		p.last = e
	}
	if e.Kind == executor.TierStarted {
		p.tier = e.Tier
	}
	if e.Kind == executor.StepFailed {
		p.failed++
	}
	line := ""
	switch e.Kind {
	case executor.TierStarted:
		line = fmt.Sprintf("tier %s: started, %s", tierString(e.Tier), e.Message)
	case executor.TierFinished:
		line = fmt.Sprintf("tier %s: finished: %s", tierString(e.Tier), e.Message)
	case executor.StepDone:
		line = fmt.Sprintf("%s: %s done, %s (%d/%d)", e.VM, e.Action, e.Message, e.Done, e.Total)
	case executor.StepFailed:
		line = fmt.Sprintf("%s: %s FAILED: %s (%d/%d)", e.VM, e.Action, e.Message, e.Done, e.Total)
	case executor.Stopping:
		line = "stopping: " + e.Message
	case executor.StepPhase, executor.StepStarted:
		if p.live {
			p.status()
			return
		}
		msg := e.Phase
		if msg == "" {
			msg = "started (" + string(e.Action) + ")"
		}
		if e.Message != "" {
			msg += ": " + e.Message
		}
		line = fmt.Sprintf("%s: %s", e.VM, msg)
	}
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
		p.status()
		return
	}
	fmt.Fprintf(p.w, "%s %s\n", e.Time.Format("15:04:05"), line)
}

func (p *progress) close() {
	if p.live {
		close(p.stopped)
		p.wg.Wait()
		fmt.Fprint(p.w, "\r\033[K")
	}
}
