// Package cluster starts a real, local stretched Kubernetes cluster for the end-to-end
// tests and the demo: etcd, kube-apiserver, kube-scheduler and kube-controller-manager
// built from source, and one kwok per site simulating that site's kubelets, so that
// stopping one kwok is that site going dark.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Users in the token file besides the admin: a viewer who may only read, for RBAC tests.
const (
	AdminToken  = "sitefail-admin-token"
	ViewerToken = "sitefail-viewer-token"
	// OperatorToken and ReaderToken are users for the shipped roles (deploy/rbac); the
	// tests bind them.
	OperatorToken = "sitefail-operator-token"
	ReaderToken   = "sitefail-reader-token"
	// KubeVirt's components authenticate as their service accounts (virt-api reverts
	// VMI status written by anyone else), through static tokens.
	KubeVirtControllerToken = "sitefail-kubevirt-controller-token"
	KubeVirtAPIToken        = "sitefail-kubevirt-apiserver-token"
	KubeVirtHandlerToken    = "sitefail-kubevirt-handler-token"
	// KwokGroupLabel ties a node to its site's kwok, independently of the site label the
	// plugin reads, so relabeling a node does not change which kwok runs it.
	KwokGroupLabel = "sitefail.test/kwok-group"
)

// Config describes the cluster to start.
type Config struct {
	Sites        []string
	NodesPerSite int
	NodeCPU      string
	NodeMemory   string
	// BinDir holds etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kwok.
	BinDir string
	// WorkDir holds data, certificates, logs and the kubeconfig; a temporary one when empty.
	WorkDir string
	// NodeMonitorGracePeriod is how long a silent node stays Ready.
	NodeMonitorGracePeriod time.Duration
	// UnlabeledNodes are extra nodes without a site label (run by the first site's kwok).
	UnlabeledNodes int
	Log            io.Writer
}

func (c *Config) defaults() {
	if len(c.Sites) == 0 {
		c.Sites = []string{"Primary", "DR"}
	}
	if c.NodesPerSite == 0 {
		c.NodesPerSite = 4
	}
	if c.NodeCPU == "" {
		c.NodeCPU = "16"
	}
	if c.NodeMemory == "" {
		c.NodeMemory = "64Gi"
	}
	if c.NodeMonitorGracePeriod == 0 {
		c.NodeMonitorGracePeriod = 20 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Cluster is a running local cluster.
type Cluster struct {
	cfg        Config
	dir        string
	ownDir     bool
	Kubeconfig string
	Config     *rest.Config
	Kube       kubernetes.Interface
	Host       string

	mu    sync.Mutex
	procs []*proc
	kwoks map[string]*proc
}

type proc struct {
	name    string
	bin     string
	args    []string
	env     []string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error
}

// BinDirFromEnv returns $SITEFAIL_TOOLS_BIN, or builds the tools with hack/build-tools.sh.
func BinDirFromEnv() (string, error) {
	if d := os.Getenv("SITEFAIL_TOOLS_BIN"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(root, "hack", "build-tools.sh"), "all").Output()
	if err != nil {
		return "", fmt.Errorf("building the test cluster's binaries (hack/build-tools.sh): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "build-tools.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (hack/build-tools.sh)")
		}
		dir = parent
	}
}

// Start launches the cluster and waits until every node is Ready. On failure it stops
// whatever it started and returns an error with the failing component's log tail.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	cfg.defaults()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("missing binary %s in %s: run hack/build-tools.sh", b, cfg.BinDir)
		}
	}
	c := &Cluster{cfg: cfg, dir: cfg.WorkDir, kwoks: map[string]*proc{}}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "sitefail-cluster-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := c.createNodes(ctx); err != nil {
		return nil, err
	}
	for _, site := range cfg.Sites {
		if err := c.StartSite(site); err != nil {
			return nil, err
		}
	}
	if err := c.WaitNodes(ctx, 2*time.Minute, func(n *corev1.Node) bool { return nodeReady(n) && !hasTaint(n, "node.kubernetes.io/not-ready") }); err != nil {
		return nil, c.withLogs(fmt.Errorf("nodes did not become Ready: %w", err), "kwok-"+cfg.Sites[0], "kube-controller-manager")
	}
	return c, nil
}

// Dir is the cluster's work directory (logs, kubeconfig).
func (c *Cluster) Dir() string { return c.dir }

// FreePort returns a free loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	pki := filepath.Join(c.dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	etcdPort, err := FreePort()
	if err != nil {
		return err
	}
	peerPort, err := FreePort()
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if _, err := c.spawn("etcd", filepath.Join(c.cfg.BinDir, "etcd"),
		"--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peerPort),
		"--quota-backend-bytes", strconv.Itoa(2<<30), "--unsafe-no-fsync"); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "etcd", etcdURL+"/health", nil, 30*time.Second); err != nil {
		return err
	}

	// The aggregator proxies to virt-api's stand-in with a front-proxy client certificate.
	frontCA, err := newCA("front-proxy-ca")
	if err != nil {
		return err
	}
	frontCAFile, _, err := frontCA.write(pki, "front-proxy-ca")
	if err != nil {
		return err
	}
	proxyClient, err := newCert("front-proxy-client", frontCA, false, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err != nil {
		return err
	}
	proxyCert, proxyKey, err := proxyClient.write(pki, "front-proxy-client")
	if err != nil {
		return err
	}
	saPub, saKey, err := writeServiceAccountKeys(pki)
	if err != nil {
		return err
	}
	tokens := filepath.Join(pki, "tokens.csv")
	lines := []string{AdminToken + ",admin,admin-uid,system:masters", ViewerToken + ",viewer,viewer-uid,",
		OperatorToken + ",operator,operator-uid,", ReaderToken + ",reader,reader-uid,"}
	for token, sa := range map[string]string{KubeVirtControllerToken: "kubevirt-controller", KubeVirtAPIToken: "kubevirt-apiserver", KubeVirtHandlerToken: "kubevirt-handler"} {
		lines = append(lines, fmt.Sprintf(`%s,system:serviceaccount:kubevirt:%s,%s-uid,"system:serviceaccounts,system:serviceaccounts:kubevirt,system:authenticated"`, token, sa, sa))
	}
	if err := os.WriteFile(tokens, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	c.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
	if _, err := c.spawn("kube-apiserver", filepath.Join(c.cfg.BinDir, "kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--secure-port", strconv.Itoa(port), "--bind-address", "127.0.0.1",
		"--cert-dir", filepath.Join(pki, "serving"),
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--disable-admission-plugins", "ServiceAccount",
		"--requestheader-client-ca-file", frontCAFile,
		"--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User",
		"--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--proxy-client-cert-file", proxyCert, "--proxy-client-key-file", proxyKey,
		"--enable-aggregator-routing=false",
		"--watch-cache=true", "--profiling=false"); err != nil {
		return err
	}
	if err := c.waitHTTP(ctx, "kube-apiserver", c.Host+"/readyz", map[string]string{"Authorization": "Bearer " + AdminToken}, 90*time.Second); err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}

	if _, err := c.spawn("kube-scheduler", filepath.Join(c.cfg.BinDir, "kube-scheduler"),
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--secure-port", "0"); err != nil {
		return err
	}
	grace := c.cfg.NodeMonitorGracePeriod.String()
	if _, err := c.spawn("kube-controller-manager", filepath.Join(c.cfg.BinDir, "kube-controller-manager"),
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--secure-port", "0",
		"--controllers", "node-lifecycle-controller,taint-eviction-controller,garbage-collector-controller,namespace-controller,pod-garbage-collector-controller,disruption-controller,persistentvolume-binder-controller,persistentvolumeclaim-protection-controller,persistentvolume-protection-controller",
		"--node-monitor-grace-period", grace, "--node-monitor-period", "2s"); err != nil {
		return err
	}
	return nil
}

func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["sitefail-local"] = &clientcmdapi.Cluster{Server: c.Host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: AdminToken}
	kc.AuthInfos["viewer"] = &clientcmdapi.AuthInfo{Token: ViewerToken}
	kc.AuthInfos["operator"] = &clientcmdapi.AuthInfo{Token: OperatorToken}
	kc.AuthInfos["reader"] = &clientcmdapi.AuthInfo{Token: ReaderToken}
	kc.Contexts["sitefail-operator"] = &clientcmdapi.Context{Cluster: "sitefail-local", AuthInfo: "operator", Namespace: "default"}
	kc.Contexts["sitefail-reader"] = &clientcmdapi.Context{Cluster: "sitefail-local", AuthInfo: "reader", Namespace: "default"}
	kc.Contexts["sitefail-local"] = &clientcmdapi.Context{Cluster: "sitefail-local", AuthInfo: "admin", Namespace: "default"}
	kc.Contexts["sitefail-viewer"] = &clientcmdapi.Context{Cluster: "sitefail-local", AuthInfo: "viewer", Namespace: "default"}
	kc.CurrentContext = "sitefail-local"
	if err := clientcmd.WriteToFile(*kc, c.Kubeconfig); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	c.Config = cfg
	c.Kube, err = kubernetes.NewForConfig(cfg)
	return err
}

// KubeconfigFor writes a kubeconfig that authenticates with token and returns its path.
func (c *Cluster) KubeconfigFor(name, token string) (string, error) {
	return c.KubeconfigVia(name, c.Host, token)
}

// KubeconfigVia is KubeconfigFor through another server: a proxy in front of the API
// server, say.
func (c *Cluster) KubeconfigVia(name, server, token string) (string, error) {
	path := filepath.Join(c.dir, "kubeconfig-"+name)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["sitefail-local"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "sitefail-local", AuthInfo: name}
	kc.CurrentContext = name
	return path, clientcmd.WriteToFile(*kc, path)
}

// ConfigFor is the admin's rest config with another user's token.
func (c *Cluster) ConfigFor(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = token
	cfg.QPS, cfg.Burst = c.Config.QPS, c.Config.Burst
	return cfg
}

// NodeName names node i of a site.
func NodeName(site string, i int) string {
	return fmt.Sprintf("%s-node-%d", strings.ToLower(site), i)
}

func (c *Cluster) createNodes(ctx context.Context) error {
	for _, site := range c.cfg.Sites {
		for i := 1; i <= c.cfg.NodesPerSite; i++ {
			if err := c.AddNode(ctx, NodeName(site, i), site, KwokGroup(site)); err != nil {
				return err
			}
		}
	}
	for i := 1; i <= c.cfg.UnlabeledNodes; i++ {
		if err := c.AddNode(ctx, fmt.Sprintf("spare-node-%d", i), "", KwokGroup(c.cfg.Sites[0])); err != nil {
			return err
		}
	}
	return nil
}

// AddNode creates a node in a site ("" for none) whose kubelet is the kwok of group
// (see StartSite: the group of site S is KwokGroup(S)).
func (c *Cluster) AddNode(ctx context.Context, name, site, group string) error {
	// As KubeVirt's own kwok fixture makes them: schedulable for VMIs, a machine type,
	// and a host-model CPU, which a migration's target pod must match. No
	// kubevirt.io/heartbeat annotation: a stale one makes virt-controller fail the
	// node's VMIs.
	labels := map[string]string{"kubernetes.io/hostname": name, "type": "kwok", KwokGroupLabel: group,
		"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
		"kubevirt.io/schedulable":                                  "true",
		"machine-type.node.kubevirt.io/q35":                        "true",
		"host-model-cpu.node.kubevirt.io/Skylake-Client-IBRS":      "true",
		"cpu-model-migration.node.kubevirt.io/Skylake-Client-IBRS": "true",
		"cpu-model.node.kubevirt.io/Skylake-Client-IBRS":           "true",
	}
	if site != "" {
		labels[selector.DefaultSiteKey] = site
	}
	// An InternalIP, as a kubelet reports one: a storage fence (NetworkFence) cuts a
	// node off by its addresses. kwok keeps addresses a node already has.
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	ip := fmt.Sprintf("10.%d.%d.%d", 100+h.Sum32()>>16%100, h.Sum32()>>8&255, 1+h.Sum32()%254)
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}},
		Status: corev1.NodeStatus{Capacity: c.nodeResources(), Allocatable: c.nodeResources(),
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}},
	}
	_, err := c.Kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	return err
}

func (c *Cluster) nodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(c.cfg.NodeCPU),
		corev1.ResourceMemory: resource.MustParse(c.cfg.NodeMemory),
		corev1.ResourcePods:   resource.MustParse("250"),
		// Launcher pods request scratch space for the domain.
		corev1.ResourceEphemeralStorage: resource.MustParse("200Gi"),
		// The device plugins of a KubeVirt node; every launcher pod requests kvm and tun.
		"devices.kubevirt.io/kvm":       resource.MustParse("1k"),
		"devices.kubevirt.io/tun":       resource.MustParse("1k"),
		"devices.kubevirt.io/vhost-net": resource.MustParse("1k"),
	}
}

// KwokGroup is the value of KwokGroupLabel on a site's nodes.
func KwokGroup(site string) string { return strings.ToLower(site) }

// kwokStages are the pod stages every kwok runs: a launcher pod ends as its kubelet
// would end it (kwok-stages.yaml).
//
//go:embed kwok-stages.yaml
var kwokStages []byte

// StartSite starts (again) the kwok that runs a site's kubelets.
func (c *Cluster) StartSite(site string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.kwoks[site]; p != nil && !p.done() {
		return nil
	}
	stages := filepath.Join(c.dir, "kwok-stages.yaml")
	if err := os.WriteFile(stages, kwokStages, 0o644); err != nil {
		return err
	}
	p, err := c.spawnLocked("kwok-"+site, filepath.Join(c.cfg.BinDir, "kwok"),
		"--kubeconfig", c.Kubeconfig,
		"--config", stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-label-selector", KwokGroupLabel+"="+KwokGroup(site),
		"--server-address", "127.0.0.1:0",
		"--node-lease-duration-seconds", "40")
	if err != nil {
		return err
	}
	c.kwoks[site] = p
	return nil
}

// StopSite kills the site's kwok: its nodes stop reporting, as in a site outage.
func (c *Cluster) StopSite(site string) error {
	c.mu.Lock()
	p := c.kwoks[site]
	delete(c.kwoks, site)
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("site %s is not running", site)
	}
	p.kill()
	return nil
}

// WaitNodes waits until every node satisfies ok.
func (c *Cluster) WaitNodes(ctx context.Context, timeout time.Duration, ok func(*corev1.Node) bool) error {
	return c.WaitNodesMatching(ctx, timeout, "", ok)
}

// WaitNodesMatching waits until every node matching the label selector satisfies ok.
func (c *Cluster) WaitNodesMatching(ctx context.Context, timeout time.Duration, labelSelector string, ok func(*corev1.Node) bool) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		list, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labelSelector})
		if err == nil {
			bad := []string{}
			for i := range list.Items {
				if !ok(&list.Items[i]) {
					bad = append(bad, list.Items[i].Name)
				}
			}
			if len(bad) == 0 && len(list.Items) > 0 {
				return nil
			}
			last = "waiting for " + strings.Join(bad, ", ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return errors.New(last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool { return nodeReady(n) }

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

// Spawn starts a process beside the control plane, logging to the work directory; Stop
// ends it with the rest.
func (c *Cluster) Spawn(name, bin string, args ...string) error {
	_, err := c.spawn(name, bin, args...)
	return err
}

// SpawnEnv is Spawn with variables (KEY=VALUE) added to the test's environment.
func (c *Cluster) SpawnEnv(name string, env []string, bin string, args ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.spawnEnvLocked(name, env, bin, args...)
	return err
}

// Exited reports whether the named process has exited, and its error.
func (c *Cluster) Exited(name string) (bool, error) {
	p := c.find(name)
	if p == nil || !p.done() {
		return false, nil
	}
	return true, p.err
}

// WithLogs appends the last lines of the named components' logs to err.
func (c *Cluster) WithLogs(err error, names ...string) error { return c.withLogs(err, names...) }

func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spawnLocked(name, bin, args...)
}

func (c *Cluster) spawnLocked(name, bin string, args ...string) (*proc, error) {
	return c.spawnEnvLocked(name, nil, bin, args...)
}

func (c *Cluster) spawnEnvLocked(name string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, and killed with the parent even if it dies without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	fmt.Fprintf(c.cfg.Log, "started %s (pid %d, log %s)\n", name, cmd.Process.Pid, logPath)
	p := &proc{name: name, bin: bin, args: args, env: env, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

func (p *proc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *proc) kill() {
	if p.done() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

func (c *Cluster) waitHTTP(ctx context.Context, name, url string, headers map[string]string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p := c.find(name); p != nil && p.done() {
			return c.withLogs(fmt.Errorf("%s exited during startup: %v", name, p.err), name)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return c.withLogs(fmt.Errorf("%s not ready within %s: %v", name, timeout, last), name)
}

// find returns the named process, the latest when it was started again.
func (c *Cluster) find(name string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i].name == name {
			return c.procs[i]
		}
	}
	return nil
}

// Kill ends the named component at once (SIGKILL), as a crash or a pulled plug would.
func (c *Cluster) Kill(name string) error {
	p := c.find(name)
	if p == nil {
		return fmt.Errorf("no component %s", name)
	}
	p.kill()
	return nil
}

// Respawn starts the named component again with the arguments it was first started
// with, unless it is running.
func (c *Cluster) Respawn(name string) error {
	p := c.find(name)
	if p == nil {
		return fmt.Errorf("no component %s", name)
	}
	if !p.done() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.spawnEnvLocked(name, p.env, p.bin, p.args...)
	return err
}

// WaitAPIServer waits until kube-apiserver answers /readyz.
func (c *Cluster) WaitAPIServer(ctx context.Context, timeout time.Duration) error {
	return c.waitHTTP(ctx, "kube-apiserver", c.Host+"/readyz", map[string]string{"Authorization": "Bearer " + AdminToken}, timeout)
}

// withLogs appends the last lines of the named components' logs to err.
func (c *Cluster) withLogs(err error, names ...string) error {
	var b strings.Builder
	b.WriteString(err.Error())
	for _, n := range names {
		b.WriteString(fmt.Sprintf("\n--- last lines of %s ---\n%s", n, c.LogTail(n, 20)))
	}
	return errors.New(b.String())
}

// LogTail returns the last n lines of a component's log.
func (c *Cluster) LogTail(name string, n int) string {
	data, err := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop kills every process and removes the work directory it created.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].kill()
	}
	if c.ownDir && os.Getenv("SITEFAIL_KEEP_CLUSTER_DIR") == "" {
		_ = os.RemoveAll(c.dir)
	}
}

// KwokPID returns the process id of a site's kwok, 0 when it is not running.
func (c *Cluster) KwokPID(site string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.kwoks[site]; p != nil && !p.done() {
		return p.cmd.Process.Pid
	}
	return 0
}
