package executor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// BenchmarkScheduleRTO is the executor's own schedule, without a control plane's
// delays: 1,000 running VMs, 50 in flight, each Ready 100 ms after its migration or
// restart. The ideal is ceil(1000/50) x 100 ms; rto/ideal is what the throttle, the
// refill of its slots and the waits add to it.
func BenchmarkScheduleRTO(b *testing.B) {
	const vms, inFlight, boot = 1000, 50, 100 * time.Millisecond
	ideal := float64((vms+inFlight-1)/inFlight) * boot.Seconds()
	var ratio float64
	for b.Loop() {
		f := newFake(boot)
		for i := 0; i < vms; i++ {
			f.add("ns", fmt.Sprint("vm-", i), 1, "Primary", true, i%2 == 0)
		}
		p, err := plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: plan.ModeAuto, MaxInFlight: inFlight})
		if err != nil {
			b.Fatal(err)
		}
		cfg := config("sf-b-000001", inFlight)
		cfg.ReadyTimeout = time.Minute
		rep, err := New(f, cfg, nil).Run(context.Background(), context.Background(), p)
		if err != nil || rep.Failed() {
			b.Fatalf("%v %+v", err, rep)
		}
		ratio = rep.Tiers[0].RTOSeconds / ideal
	}
	b.ReportMetric(ratio, "rto/ideal")
}
