package stretched

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/sitefail/kubectl-sitefail/test/cluster"
)

// Medik8sNamespace is where the medik8s operators would run: node-healthcheck-operator's
// deployment namespace, and the namespace of the FenceAgentsRemediationTemplates, hence
// of the FenceAgentsRemediations NHC creates from them.
const Medik8sNamespace = "medik8s"

// nhcWebhookPort is the port node-healthcheck-operator v0.12.0 serves its webhook on:
// fixed in its main (cmd/main.go getWebhookServer), on every address, with no flag.
const nhcWebhookPort = 9443

// nhcLockFile serialises the managers of every cluster on the machine (hack/e2e.sh runs
// shards side by side, each with a cluster of its own): the port is the machine's.
const nhcLockFile = "/tmp/kubectl-sitefail-nhc-webhook-9443.lock"

// nhcLockWait is how long StartNodeHealthChecks waits for another cluster's manager.
const nhcLockWait = 15 * time.Minute

// StartNodeHealthChecks runs node-healthcheck-operator v0.12.0's own manager
// (hack/build-tools.sh fencing builds it from its module) against the cluster, as the
// admin, until stop is called: NodeHealthChecks are then acted on for real, and a node
// they find unhealthy gets a remediation object made from their template (the harness
// plays Fence Agents Remediation's controller for those: playFenceAgents). The
// manager's webhook port is fixed, so the call first takes a machine-wide lock, held
// until stop, and may wait for another cluster's manager to be stopped.
func (e *Env) StartNodeHealthChecks(ctx context.Context) (stop func(), err error) {
	bin := filepath.Join(e.binDir, "nhc-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("node-healthcheck-operator's manager is not built (hack/build-tools.sh fencing): %w", err)
	}
	unlock, err := lockFile(ctx, nhcLockFile, nhcLockWait)
	if err != nil {
		return nil, fmt.Errorf("wait for the machine's NHC webhook port %d: %w", nhcWebhookPort, err)
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	// controller-runtime's webhook server reads its certificate from
	// $TMPDIR/k8s-webhook-server/serving-certs; nothing calls the webhook here (no
	// webhook configuration points at it), but the manager does not start without one.
	dir := filepath.Join(e.Dir(), "nhc")
	certDir := filepath.Join(dir, "k8s-webhook-server", "serving-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	_, certFile, _, err := cluster.IssueCA(certDir, "tls", "localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	const name = "nhc-manager"
	if err := e.SpawnEnv(name, []string{"DEPLOYMENT_NAMESPACE=" + Medik8sNamespace, "TMPDIR=" + dir}, bin,
		"--kubeconfig", e.Kubeconfig, "--leader-elect=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--zap-devel=false"); err != nil {
		return nil, err
	}
	stop = func() {
		_ = e.Kill(name)
		unlock()
	}
	// Up once its webhook answers with this cluster's certificate; its controllers
	// start right after.
	deadline := time.Now().Add(90 * time.Second)
	for !servesCert(nhcWebhookPort, cert) {
		if done, perr := e.Exited(name); done {
			stop()
			return nil, e.WithLogs(fmt.Errorf("%s exited during startup: %v", name, perr), name)
		}
		if time.Now().After(deadline) {
			stop()
			return nil, e.WithLogs(fmt.Errorf("%s: its webhook did not answer on port %d within 90s", name, nhcWebhookPort), name)
		}
		select {
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return stop, nil
}

// servesCert reports whether the local server on port presents the certificate in
// certPEM.
func servesCert(port int, certPEM []byte) bool {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return false
	}
	d := &net.Dialer{Timeout: time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return false
	}
	defer conn.Close()
	peers := conn.ConnectionState().PeerCertificates
	return len(peers) > 0 && bytes.Equal(peers[0].Raw, block.Bytes)
}

// lockFile takes an exclusive flock on path, waiting up to wait; unlock releases it
// (once, however often it is called). A process that dies releases its locks with its
// descriptors.
func lockFile(ctx context.Context, path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			var once sync.Once
			return func() { once.Do(func() { _ = f.Close() }) }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s is still locked after %s: another cluster on this machine runs node-healthcheck-operator", path, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
