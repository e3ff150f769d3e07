// Package bench is the scale scenario of `make bench`: a stretched cluster of two sites
// of 100 kwok nodes each, running KubeVirt's own controllers, 5,000 VMs in 50
// namespaces over 5 tiers, 1,000 of them running. It measures the plugin beside its
// peers in the same run (kubectl, and loops of kubectl patch) and writes
// docs/benchmarks.md. It runs only when SITEFAIL_BENCH is set: it takes tens of minutes.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/faultproxy"
	"github.com/sitefail/kubectl-sitefail/test/kubevirtstack"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// scale is the scenario's size, from the environment (the defaults are the issue's).
type scale struct {
	nodes, vms, running, namespaces, tiers, inFlight int
	boot                                             time.Duration
}

func scaleFromEnv() scale {
	atoi := func(k string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
			return v
		}
		return def
	}
	boot, err := time.ParseDuration(os.Getenv("SITEFAIL_BENCH_BOOT"))
	if err != nil || boot <= 0 {
		boot = 5 * time.Second
	}
	return scale{nodes: atoi("SITEFAIL_BENCH_NODES", 100), vms: atoi("SITEFAIL_BENCH_VMS", 5000), running: atoi("SITEFAIL_BENCH_RUNNING", 1000),
		namespaces: atoi("SITEFAIL_BENCH_NAMESPACES", 50), tiers: 5, inFlight: atoi("SITEFAIL_BENCH_IN_FLIGHT", 50), boot: boot}
}

// row is one line of docs/benchmarks.md.
type row struct {
	what, measured, peer, ratio, target, met, command string
}

type bench struct {
	t       *testing.T
	env     *stretched.Env
	binDir  string
	proxy   *faultproxy.Proxy
	counted string // kubeconfig through the counting proxy
	// profiles numbers the profiles written (SITEFAIL_BENCH_PROFILE).
	profiles int
	rows     []row
}

func TestScale(t *testing.T) {
	if os.Getenv("SITEFAIL_BENCH") == "" {
		t.Skip("the scale scenario runs with make bench (SITEFAIL_BENCH=1)")
	}
	sc := scaleFromEnv()
	ctx := context.Background()
	b := &bench{t: t}
	b.binDir = t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(b.binDir, "kubectl-sitefail"), "../../cmd/kubectl-sitefail")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	start := time.Now()
	env, err := stretched.Start(ctx, stretched.Options{
		Cluster: cluster.Config{Sites: []string{"Primary", "DR"}, NodesPerSite: sc.nodes, NodeCPU: "64", NodeMemory: "256Gi"},
		// KubeVirt runs 5 migrations at once by default; the relocate row measures the
		// throttle at --max-in-flight, so KubeVirt is allowed as many.
		KubeVirt: kubevirtstack.Config{BootDelay: sc.boot, MigrationDelay: sc.boot,
			Migrations: map[string]any{"parallelMigrationsPerCluster": int64(sc.inFlight), "parallelOutboundMigrationsPerNode": int64(sc.inFlight)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	b.env = env
	t.Logf("cluster of %d nodes ready in %s", 2*sc.nodes, time.Since(start).Round(time.Second))

	specs := make([]stretched.VMSpec, 0, sc.vms)
	perTier := sc.vms / sc.tiers
	for i := 0; i < sc.vms; i++ {
		tier := 1 + i/perTier
		if tier > sc.tiers {
			tier = sc.tiers
		}
		spec := stretched.VMSpec{Namespace: fmt.Sprintf("bench-%02d", i%sc.namespaces), Name: fmt.Sprintf("vm-%05d", i), Tier: tier, Site: "Primary", Memory: "1Gi"}
		if i >= sc.running {
			spec.RunStrategy = kubevirtv1.RunStrategyHalted
		}
		specs = append(specs, spec)
	}
	start = time.Now()
	if err := createParallel(ctx, env, specs, 16); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitSettled(ctx, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d VMs, %d running, settled in %s", sc.vms, sc.running, time.Since(start).Round(time.Second))

	cert, err := cluster.ServingCert("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	b.proxy, err = faultproxy.Start(faultproxy.Config{Target: env.Host, Cert: cert})
	if err != nil {
		t.Fatal(err)
	}
	defer b.proxy.Stop()
	if b.counted, err = env.KubeconfigVia("counted", b.proxy.URL, cluster.AdminToken); err != nil {
		t.Fatal(err)
	}

	b.planVersusKubectl()
	b.tuiAtScale(sc)
	b.patchOnly(sc)
	b.relocateAndFailover(sc)
	b.writeDoc(sc)
}

// planVersusKubectl: `plan --all -A` beside `kubectl get vm -A -o json`, median of 3,
// wall time and peak memory.
func (b *bench) planVersusKubectl() {
	var planWall, planRSS, getWall, getRSS []float64
	for i := 0; i < 3; i++ {
		w, rss := b.measure(b.env.Kubeconfig, b.sitefailCmd("plan", "--all", "--to", "DR", "-A", "-o", "json"))
		planWall, planRSS = append(planWall, w), append(planRSS, rss)
		w, rss = b.measure(b.env.Kubeconfig, exec.Command("kubectl", "get", "vm", "-A", "-o", "json"))
		getWall, getRSS = append(getWall, w), append(getRSS, rss)
	}
	pw, pr, gw, gr := median(planWall), median(planRSS), median(getWall), median(getRSS)
	b.add(row{what: "`plan --all --to DR -A`, wall time", measured: secs(pw), peer: "`kubectl get vm -A -o json`: " + secs(gw),
		ratio: ratio(pw, gw), target: "<= 0.6x", met: yes(pw <= 0.6*gw), command: "kubectl sitefail plan --all --to DR -A -o json"})
	b.add(row{what: "`plan --all --to DR -A`, peak memory", measured: mib(pr), peer: "kubectl: " + mib(gr),
		ratio: ratio(pr, gr), target: "<= 0.75x", met: yes(pr <= 0.75*gr), command: "(same run, GNU time %M)"})
}

// tuiAtScale runs `ui -A` in a real terminal (tmux) over the whole cluster: the time
// until its first screen lists VMs, the CPU it burns over 30 s in which nothing changes
// but node heartbeats, and its peak memory.
func (b *bench) tuiAtScale(sc scale) {
	if _, err := exec.LookPath("tmux"); err != nil {
		b.t.Log("tmux not found: the TUI rows are not measured")
		return
	}
	session := fmt.Sprintf("sitefail-bench-%d", os.Getpid())
	defer exec.Command("tmux", "kill-session", "-t", session).Run()
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", args...).CombinedOutput()
		if err != nil {
			b.t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cmd := fmt.Sprintf("exec env KUBECONFIG=%s SITEFAIL_CONFIG=/nonexistent/none.yaml %s ui -A", b.env.Kubeconfig, filepath.Join(b.binDir, "kubectl-sitefail"))
	// The first screen is the median of three starts; the last one stays for the rest.
	var firsts []float64
	for run := 0; run < 3; run++ {
		if run > 0 {
			tmux("kill-session", "-t", session)
		}
		start := time.Now()
		tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd)
		first := 0.0
		for time.Since(start) < 2*time.Minute {
			if strings.Contains(tmux("capture-pane", "-t", session, "-p"), "bench-00/vm-") {
				first = time.Since(start).Seconds()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if first == 0 {
			b.t.Fatalf("ui never listed a VM:\n%s", tmux("capture-pane", "-t", session, "-p"))
		}
		firsts = append(firsts, first)
	}
	first := median(firsts)
	b.t.Logf("ui first screens: %v", firsts)
	pid := strings.TrimSpace(tmux("list-panes", "-t", session, "-F", "#{pane_pid}"))
	time.Sleep(5 * time.Second)
	const idle = 30 * time.Second
	before := cpuTicks(b.t, pid)
	time.Sleep(idle)
	busy := float64(cpuTicks(b.t, pid)-before) / 100 / idle.Seconds() // USER_HZ is 100 on Linux
	peak := procStatusKB(b.t, pid, "VmHWM") * 1024
	b.add(row{what: fmt.Sprintf("`ui -A` with %d VMs: first screen", sc.vms), measured: secs(first), peer: "-", ratio: "-",
		target: "<= 2 s", met: yes(first <= 2), command: "kubectl sitefail ui -A (in tmux, until a VM is listed; median of 3)"})
	b.add(row{what: "`ui -A`, idle (node heartbeats only), CPU", measured: fmt.Sprintf("%.1f%% of a core", busy*100), peer: "-", ratio: "-",
		target: "<= 5%", met: yes(busy <= 0.05), command: "(same run, /proc/PID/stat over 30 s)"})
	b.add(row{what: "`ui -A`, peak memory", measured: mib(peak), peer: "-", ratio: "-",
		target: "<= 200 MiB", met: yes(peak <= 200<<20), command: "(same run, VmHWM)"})
}

// cpuTicks is a process's user plus system time, in clock ticks.
func cpuTicks(t *testing.T, pid string) int64 {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The command name may hold spaces; the fields after it are fixed.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func procStatusKB(t *testing.T, pid, field string) float64 {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb
		}
	}
	return 0
}

// patchOnly: the stopped VMs of one tier moved by the plugin straight to the API
// server, as the kubectl loops are (a serial one and an xargs -P 50 one, over two other
// tiers); then those of a fourth tier moved through the counting proxy, whose TLS
// on both sides costs the same two cores, to count its requests and time them.
func (b *bench) patchOnly(sc scale) {
	tier2 := b.vmsOfTier(2)
	wall, _ := b.measure(b.env.Kubeconfig, b.sitefailCmd("move", "--tier", "2", "--to", "DR", "-A", "--progress", "lines"))
	b.t.Logf("patch-only move of %d VMs: %s", len(tier2), secs(wall))
	tier5 := b.vmsOfTier(5)
	b.proxy.Reset()
	proxied, _ := b.measure(b.counted, b.sitefailCmd("move", "--tier", "5", "--to", "DR", "-A", "--progress", "lines"))
	c := b.proxy.Counts()
	perVM := float64(writes(c)) / float64(len(tier5))
	b.t.Logf("patch-only move of %d VMs through the counting proxy: %s; requests %v", len(tier5), secs(proxied), c.ByKind)
	b.logTiming(c)

	patch := `{"spec":{"template":{"spec":{"nodeSelector":{"topology.kubernetes.io/site":"DR"}}}}}`
	tier3 := b.vmsOfTier(3)
	var script strings.Builder
	for _, vm := range tier3 {
		ns, name, _ := strings.Cut(vm, "/")
		fmt.Fprintf(&script, "kubectl patch vm -n %s %s --type merge -p '%s' >/dev/null\n", ns, name, patch)
	}
	loop := exec.Command("bash", "-s")
	loop.Stdin = strings.NewReader(script.String())
	serial, _ := b.measure(b.env.Kubeconfig, loop)
	tier4 := b.vmsOfTier(4)
	var list strings.Builder
	for _, vm := range tier4 {
		ns, name, _ := strings.Cut(vm, "/")
		fmt.Fprintf(&list, "%s %s\n", ns, name)
	}
	xargs := exec.Command("bash", "-c", fmt.Sprintf("xargs -P 50 -n 2 sh -c 'kubectl patch vm -n \"$0\" \"$1\" --type merge -p %q >/dev/null'", patch))
	xargs.Stdin = strings.NewReader(list.String())
	parallel, _ := b.measure(b.env.Kubeconfig, xargs)
	b.add(row{what: fmt.Sprintf("template patches, %d stopped VMs (`move --tier 2`)", len(tier2)), measured: secs(wall),
		peer:  fmt.Sprintf("serial `kubectl patch` loop, %d VMs: %s; `xargs -P 50`: %s", len(tier3), secs(serial), secs(parallel)),
		ratio: fmt.Sprintf("%.1fx faster than serial, %s of xargs", serial/wall, ratio(wall, parallel)), target: "<= 5 s, >= 25x serial",
		met: yes(wall <= 5 && serial/wall >= 25), command: "kubectl sitefail move --tier 2 --to DR -A"})
	b.add(row{what: "API requests per patch-only VM (writes)", measured: fmt.Sprintf("%.2f", perVM), peer: "kubectl patch: 1",
		ratio: "-", target: "<= 2", met: yes(perVM <= 2), command: "(counting proxy)"})
}

// relocateAndFailover: the running tier relocated to DR through the counting proxy,
// then failed over back to Primary after DR is stopped. RTO beside the ideal:
// ceil(running / max-in-flight) boots.
func (b *bench) relocateAndFailover(sc scale) {
	ideal := float64((sc.running+sc.inFlight-1)/sc.inFlight) * sc.boot.Seconds()
	inFlight := strconv.Itoa(sc.inFlight)
	b.proxy.Reset()
	rep := b.moveReport(b.counted, "move", "--tier", "1", "--to", "DR", "-A", "--max-in-flight", inFlight, "-o", "json")
	c := b.proxy.Counts()
	perVM := float64(writes(c)+reads(c)) / float64(max(sc.running, 1))
	rto := tierRTO(rep, 1)
	b.t.Logf("relocate: RTO %s; requests %v", secs(rto), c.ByKind)
	b.logTiming(c)
	b.add(row{what: fmt.Sprintf("relocate %d running VMs, `--max-in-flight %d`", sc.running, sc.inFlight), measured: "RTO " + secs(rto),
		peer: fmt.Sprintf("ideal ceil(%d/%d) x %s = %s", sc.running, sc.inFlight, sc.boot, secs(ideal)), ratio: ratio(rto, ideal),
		target: "<= 1.15", met: yes(rto <= 1.15*ideal), command: "kubectl sitefail move --tier 1 --to DR -A --max-in-flight " + inFlight})
	b.add(row{what: "API requests per live-migrated VM (all verbs)", measured: fmt.Sprintf("%.2f", perVM), peer: "-", ratio: "-",
		target: "<= 5", met: yes(perVM <= 5), command: "(counting proxy)"})

	// The ideal assumes a boot takes the boot delay. On a small machine the control
	// plane (virt-controller, the scheduler, kwok) is slower than that; one wave of
	// migrations created at once, without the plugin, is its own pace.
	wave := b.kubevirtWave(sc)
	paced := float64((sc.running+sc.inFlight-1)/sc.inFlight) * wave
	b.add(row{what: fmt.Sprintf("the same relocation against KubeVirt's own pace: one wave of %d migrations created at once, without the plugin, took %s", sc.inFlight, secs(wave)),
		measured: "RTO " + secs(rto), peer: fmt.Sprintf("ceil(%d/%d) x %s = %s", sc.running, sc.inFlight, secs(wave), secs(paced)), ratio: ratio(rto, paced),
		target: "(the plugin's schedule)", met: "-", command: "(same run)"})

	if err := b.env.StopSite("DR"); err != nil {
		b.t.Fatal(err)
	}
	if err := b.env.WaitNodesMatching(context.Background(), 3*time.Minute, "topology.kubernetes.io/site=DR", func(n *corev1.Node) bool { return !cluster.NodeReady(n) }); err != nil {
		b.t.Fatal(err)
	}
	rep = b.moveReport(b.env.Kubeconfig, "move", "--tier", "1", "--to", "Primary", "-A", "--max-in-flight", inFlight, "--confirm-site-down=DR", "-o", "json")
	rto = tierRTO(rep, 1)
	b.add(row{what: fmt.Sprintf("failover of the same %d VMs (DR down)", sc.running), measured: "RTO " + secs(rto),
		peer: "ideal " + secs(ideal), ratio: ratio(rto, ideal), target: "<= 1.15", met: yes(rto <= 1.15*ideal),
		command: "kubectl sitefail move --tier 1 --to Primary -A --confirm-site-down=DR --max-in-flight " + inFlight})
	// A failover releases each instance (its launcher pod deleted at once) and KubeVirt
	// recreates it; one wave of that, without the plugin, is KubeVirt's pace for it.
	wave = b.recreateWave(sc)
	paced = float64((sc.running+sc.inFlight-1)/sc.inFlight) * wave
	b.add(row{what: fmt.Sprintf("the same failover against KubeVirt's own pace: %d launcher pods deleted at once, without the plugin, were running and Ready again after %s", sc.inFlight, secs(wave)),
		measured: "RTO " + secs(rto), peer: fmt.Sprintf("ceil(%d/%d) x %s = %s", sc.running, sc.inFlight, secs(wave), secs(paced)), ratio: ratio(rto, paced),
		target: "(the plugin's schedule)", met: "-", command: "(same run)"})
}

// recreateWave force-deletes the launcher pods of the first max-in-flight running VMs at
// once, as a failover's release does, and returns the seconds until each VM has a new
// instance that is Ready.
func (b *bench) recreateWave(sc scale) float64 {
	ctx := context.Background()
	old := map[string]string{}
	for _, key := range b.vmsOfTier(1)[:sc.inFlight] {
		ns, name, _ := strings.Cut(key, "/")
		u, err := b.env.Dynamic.Resource(kubevirt.VMIs).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			b.t.Fatal(err)
		}
		old[key] = string(u.GetUID())
	}
	start := time.Now()
	for key, uid := range old {
		ns, _, _ := strings.Cut(key, "/")
		if err := b.env.Kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)},
			metav1.ListOptions{LabelSelector: kubevirt.CreatedByLabel + "=" + uid}); err != nil {
			b.t.Fatal(err)
		}
	}
	return b.secondsUntil(start, "a wave of recreated instances Ready", func() bool {
		// One LIST per poll, not a GET per VM.
		list, err := b.env.Dynamic.Resource(kubevirt.VMIs).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.t.Fatal(err)
		}
		ready := 0
		for i := range list.Items {
			u := &list.Items[i]
			uid, ours := old[u.GetNamespace()+"/"+u.GetName()]
			if !ours || string(u.GetUID()) == uid {
				continue
			}
			if vmi, err := kubevirt.ToVMI(u); err == nil {
				if c, ok := kubevirt.VMICondition(vmi, kubevirtv1.VirtualMachineInstanceReady); ok && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == len(old)
	})
}

// secondsUntil polls done every 100 ms and returns the seconds from start until it
// held; the bench fails after 10 minutes.
func (b *bench) secondsUntil(start time.Time, what string, done func() bool) float64 {
	for time.Since(start) < 10*time.Minute {
		if done() {
			return time.Since(start).Seconds()
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%s: not within 10 minutes", what)
	return 0
}

// kubevirtWave creates one live migration for each of the first max-in-flight running
// VMs at once and returns the seconds until every one has succeeded.
func (b *bench) kubevirtWave(sc scale) float64 {
	ctx := context.Background()
	vms := b.vmsOfTier(1)[:sc.inFlight]
	start := time.Now()
	for i, key := range vms {
		ns, name, _ := strings.Cut(key, "/")
		m := &kubevirtv1.VirtualMachineInstanceMigration{TypeMeta: metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstanceMigration"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench-wave-%d", i), Labels: map[string]string{"bench": "wave"}},
			Spec:       kubevirtv1.VirtualMachineInstanceMigrationSpec{VMIName: name}}
		u, err := kubevirt.ToUnstructured(m)
		if err != nil {
			b.t.Fatal(err)
		}
		if _, err := b.env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			b.t.Fatal(err)
		}
	}
	return b.secondsUntil(start, "a wave of migrations finished", func() bool {
		list, err := b.env.Dynamic.Resource(kubevirt.Migrations).List(ctx, metav1.ListOptions{LabelSelector: "bench=wave"})
		if err != nil {
			b.t.Fatal(err)
		}
		done := 0
		for i := range list.Items {
			m, err := kubevirt.ToMigration(&list.Items[i])
			if err != nil {
				b.t.Fatal(err)
			}
			if ok, _ := kubevirt.MigrationDone(m); ok {
				done++
			}
		}
		return done == len(vms)
	})
}

func (b *bench) moveReport(kubeconfig string, args ...string) *executor.Report {
	cmd := b.sitefailCmd(args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "SITEFAIL_CONFIG=/nonexistent/none.yaml")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.t.Fatalf("%v: %v\n%s", args, err, errb.String())
	}
	var rep executor.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		b.t.Fatalf("%v: %v\n%s", args, err, out.String())
	}
	return &rep
}

func tierRTO(rep *executor.Report, tier int) float64 {
	for _, t := range rep.Tiers {
		if t.Tier == tier {
			return t.RTOSeconds
		}
	}
	return 0
}

func writes(c faultproxy.Counts) int {
	n := 0
	for k, v := range c.ByKind {
		if !strings.HasPrefix(k, "GET ") && !strings.HasPrefix(k, "LIST ") && !strings.HasPrefix(k, "WATCH ") {
			n += v
		}
	}
	return n
}

func reads(c faultproxy.Counts) int {
	n := 0
	for k, v := range c.ByKind {
		if strings.HasPrefix(k, "GET ") || strings.HasPrefix(k, "LIST ") || strings.HasPrefix(k, "WATCH ") {
			n += v
		}
	}
	return n
}

func (b *bench) vmsOfTier(tier int) []string {
	list, err := b.env.Dynamic.Resource(kubevirt.VMs).List(context.Background(), metav1.ListOptions{LabelSelector: fmt.Sprintf("sitefail.io/tier=%d", tier)})
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, u := range list.Items {
		out = append(out, u.GetNamespace()+"/"+u.GetName())
	}
	return out
}

// sitefailCmd runs the plugin; with SITEFAIL_BENCH_PROFILE=cpu|heap|trace each run
// also writes that profile to SITEFAIL_BENCH_PROFILE_DIR (default the working directory),
// named after its command.
func (b *bench) sitefailCmd(args ...string) *exec.Cmd {
	if kind := os.Getenv("SITEFAIL_BENCH_PROFILE"); kind != "" {
		dir := os.Getenv("SITEFAIL_BENCH_PROFILE_DIR")
		if dir == "" {
			dir = "."
		}
		b.profiles++
		name := fmt.Sprintf("%02d-%s-%s.%s", b.profiles, args[0], strings.Join(args[1:min(len(args), 3)], ""), kind)
		args = append(args, "--profile", kind, "--profile-output", filepath.Join(dir, strings.ReplaceAll(name, "-", "_")))
	}
	return exec.Command(filepath.Join(b.binDir, "kubectl-sitefail"), args...)
}

// logTiming says where a run's wall time went on the wire: per kind of request, when
// the first began and the last ended, and how many were in flight on average.
func (b *bench) logTiming(c faultproxy.Counts) {
	var first time.Time
	for _, s := range c.Timing {
		if first.IsZero() || s.First.Before(first) {
			first = s.First
		}
	}
	keys := make([]string, 0, len(c.Timing))
	for k := range c.Timing {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return c.Timing[keys[i]].First.Before(c.Timing[keys[j]].First) })
	for _, k := range keys {
		s := c.Timing[k]
		span := s.Last.Sub(s.First)
		b.t.Logf("  %-45s n=%-5d from %6.2fs to %6.2fs, busy %6.2fs (avg %.1f in flight), max %s", k, c.ByKind[k],
			s.First.Sub(first).Seconds(), s.Last.Sub(first).Seconds(), s.Busy.Seconds(), s.Busy.Seconds()/max(span.Seconds(), 1e-9), s.Max.Round(time.Millisecond))
	}
}

// measure runs cmd with kubeconfig and returns its wall time in seconds and its peak
// resident memory in bytes. The memory comes from GNU time: the rusage of a child of
// this (large) test process counts the pages it shared before exec.
func (b *bench) measure(kubeconfig string, cmd *exec.Cmd) (float64, float64) {
	if cmd.Env == nil {
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "SITEFAIL_CONFIG=/nonexistent/none.yaml", "PATH="+b.binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	timed := cmd
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		timed = exec.Command("/usr/bin/time", append([]string{"-f", "sitefail-bench-maxrss-kb=%M", cmd.Path}, cmd.Args[1:]...)...)
		timed.Env, timed.Stdin = cmd.Env, cmd.Stdin
	}
	var errb bytes.Buffer
	timed.Stdout, timed.Stderr = nil, &errb
	start := time.Now()
	if err := timed.Run(); err != nil {
		b.t.Fatalf("%v: %v\n%s", cmd.Args, err, errb.String())
	}
	wall := time.Since(start).Seconds()
	rss := 0.0
	if _, v, ok := strings.Cut(errb.String(), "sitefail-bench-maxrss-kb="); ok {
		if kb, err := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(v, "\n", 2)[0]), 64); err == nil {
			rss = kb * 1024
		}
	}
	return wall, rss
}

func (b *bench) add(r row) {
	b.t.Logf("%s: %s (peer %s, ratio %s, target %s: %s)", r.what, r.measured, r.peer, r.ratio, r.target, r.met)
	b.rows = append(b.rows, r)
}

func (b *bench) writeDoc(sc scale) {
	out := os.Getenv("SITEFAIL_BENCH_OUT")
	if out == "" {
		out = "../../docs/benchmarks.md"
	}
	var d strings.Builder
	fmt.Fprintf(&d, "# Benchmarks\n\nWritten by `make bench` (`test/bench`), %s. Every figure and its peer come from the same run.\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&d, "Scenario: 2 sites of %d kwok nodes, KubeVirt's own virt-api and virt-controller with the fake handler, %d VMs in %d namespaces over %d tiers, %d of them running (tier 1), boot and migration %s, KubeVirt's parallelMigrationsPerCluster and parallelOutboundMigrationsPerNode raised to %d (the throttle's --max-in-flight).\n\n",
		sc.nodes, sc.vms, sc.namespaces, sc.tiers, sc.running, sc.boot, sc.inFlight)
	fmt.Fprintf(&d, "Machine: %s, %d CPUs, %s.\n\n", cpuModel(), runtime.NumCPU(), runtime.Version())
	d.WriteString("| what | measured | peer (same run) | ratio | target | met | reproduce |\n|---|---|---|---|---|---|---|\n")
	for _, r := range b.rows {
		fmt.Fprintf(&d, "| %s | %s | %s | %s | %s | %s | `%s` |\n", r.what, r.measured, r.peer, r.ratio, r.target, r.met, r.command)
	}
	d.WriteString("\nThe Go benchmarks of the pure pieces, from the same `make bench` (compare runs with benchstat). `BenchmarkView5000` is one TUI frame at 5,000 VMs (target 16 ms), `BenchmarkAbsorb1000Events` a burst of 1,000 watch events into that view (target 100 ms), `BenchmarkScheduleRTO` the executor's own schedule against the ideal, without a control plane:\n\n    go test -run '^$' -bench . -benchmem ./pkg/...\n\n")
	if path := os.Getenv("SITEFAIL_BENCH_GO"); path != "" {
		if data, err := os.ReadFile(path); err == nil {
			for _, l := range strings.Split(string(data), "\n") {
				if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") {
					d.WriteString("    " + l + "\n")
				}
			}
		}
	}
	if err := os.WriteFile(out, []byte(d.String()), 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("wrote %s", out)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

// createParallel creates the VMs with a few workers: thousands of serial creates would
// dominate the scenario's set-up.
func createParallel(ctx context.Context, env *stretched.Env, specs []stretched.VMSpec, workers int) error {
	ch := make(chan []stretched.VMSpec)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range ch {
				if err := env.CreateVMs(ctx, batch); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < len(specs); i += 50 {
		ch <- specs[i:min(i+50, len(specs))]
	}
	close(ch)
	wg.Wait()
	return first
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func secs(s float64) string { return fmt.Sprintf("%.2f s", s) }
func mib(b float64) string  { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}
func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
