package plugin

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"

	"github.com/spf13/cobra"
)

// profiling is kubectl's --profile and --profile-output: a CPU or heap profile, or an
// execution trace, which shows where a move waits (API calls, throttle, barrier) rather
// than where it spends CPU.
type profiling struct {
	kind, output string
	stop         func() error
}

func (p *profiling) addFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&p.kind, "profile", "none", "profile to capture: none, cpu, heap or trace (read it with go tool pprof, or go tool trace)")
	cmd.PersistentFlags().StringVar(&p.output, "profile-output", "profile.pprof", "file the profile is written to")
}

func (p *profiling) start() error {
	if p.kind == "none" {
		return nil
	}
	switch p.kind {
	case "cpu", "heap", "trace":
	default:
		return fmt.Errorf("--profile %q: want none, cpu, heap or trace", p.kind)
	}
	f, err := os.Create(p.output)
	if err != nil {
		return fmt.Errorf("--profile-output: %v", err)
	}
	switch p.kind {
	case "cpu":
		err = pprof.StartCPUProfile(f)
		p.stop = func() error { pprof.StopCPUProfile(); return f.Close() }
	case "trace":
		err = trace.Start(f)
		p.stop = func() error { trace.Stop(); return f.Close() }
	case "heap":
		p.stop = func() error {
			runtime.GC()
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				return err
			}
			return f.Close()
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("--profile %s: %v", p.kind, err)
	}
	return nil
}

func (p *profiling) finish() {
	if p.stop == nil {
		return
	}
	if err := p.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "warning: writing the %s profile: %v\n", p.kind, err)
	}
	p.stop = nil
}

// finishAfter wraps every command's RunE so the profile is written whether the command
// succeeds or fails: cobra skips PersistentPostRunE after an error.
func (p *profiling) finishAfter(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			defer p.finish()
			return run(c, args)
		}
	}
	for _, sub := range cmd.Commands() {
		p.finishAfter(sub)
	}
}
