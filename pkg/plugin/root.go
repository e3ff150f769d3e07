// Package plugin holds the cobra commands of kubectl-sitefail. Each command has an
// options struct with Complete, Validate and Run, and writes only to its IOStreams so
// tests can capture what a user would see.
package plugin

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	// Cloud and exec auth plugins, as kubectl has them.
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Exit codes, documented in the README.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitBlocked     = 2
	ExitMoveFailed  = 3
	ExitInterrupted = 4
	// ExitDrift: gitops --check found VMs on which Git and the cluster disagree.
	ExitDrift = 5
)

// ExitError carries the process exit code for an error.
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string { return e.Err.Error() }
func (e *ExitCodeError) Unwrap() error { return e.Err }

// Code returns the exit code an error stands for.
func Code(err error) int {
	var ec *ExitCodeError
	if errors.As(err, &ec) {
		return ec.Code
	}
	if err != nil {
		return ExitError
	}
	return ExitOK
}

// Clients are the API clients a command talks through.
type Clients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Config  *rest.Config
	// Context names the kubeconfig context in use, for display.
	Context string
}

// Factory resolves kubectl's flags into clients and a namespace. Tests substitute fakes.
type Factory interface {
	Clients() (*Clients, error)
	// Namespace returns the namespace of -n or the kubeconfig context.
	Namespace() (string, error)
}

// Options are the flags every command shares.
type Options struct {
	genericiooptions.IOStreams
	ConfigFlags *genericclioptions.ConfigFlags
	Factory     Factory
	Keys        selector.Keys
	QPS         float32
	Burst       int
	ConfigFile  string
	profile     profiling
}

// FileConfig is the optional config file a user may keep, in YAML.
type FileConfig = selector.FileConfig

// DefaultConfigFile is where the config file is looked for when --config is not set.
func DefaultConfigFile() string {
	if p := os.Getenv("SITEFAIL_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "sitefail", "config.yaml")
}

// NewRootCommand builds the command tree. factory may be nil: the kubeconfig flags then
// decide the clients, as for kubectl itself.
func NewRootCommand(streams genericiooptions.IOStreams, factory Factory) *cobra.Command {
	o := &Options{IOStreams: streams, ConfigFlags: genericclioptions.NewConfigFlags(true), Factory: factory}
	cmd := &cobra.Command{
		Use:   "kubectl-sitefail",
		Short: "Fail KubeVirt VMs over between the two sites of a stretched cluster",
		Long: `kubectl sitefail moves KubeVirt virtual machines between the sites of one stretched
Kubernetes cluster, tier by tier and throttled, by patching the site key of each VM's
template nodeSelector and then live-migrating, restarting or (when the source site is
dead and fenced) releasing the VM so that it starts on the other site.

Nodes belong to a site through a label (default topology.kubernetes.io/site). VMs carry
a tier label (default sitefail.io/tier, a positive integer; tier 1 moves first).`,
		Example: `  # Which sites exist, how healthy and how full they are
  kubectl sitefail sites

  # Where every VM runs relative to its home site
  kubectl sitefail status -A

  # What moving tier 1 to DR would do, changing nothing
  kubectl sitefail plan --tier 1 --to DR -A

  # Do it
  kubectl sitefail move --tier 1 --to DR -A`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(cmd); err != nil {
				return err
			}
			return o.profile.start()
		},
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&o.Keys.Site, "site-label", "", "node label (and VM nodeSelector key) that names a site (default "+selector.DefaultSiteKey+")")
	cmd.PersistentFlags().StringVar(&o.Keys.Tier, "tier-label", "", "VM label that gives its tier (default "+selector.DefaultTierKey+")")
	cmd.PersistentFlags().StringSliceVar(&o.Keys.Witnesses, "witness-site", nil, "a site that holds only a quorum witness or an arbiter, never a move's target (repeat or comma-separate; adds to the config file's witnessSites and to the sites detected from node labels)")
	cmd.PersistentFlags().StringVar(&o.ConfigFile, "config", "", "config file with siteLabel, tierLabel and witnessSites (default $SITEFAIL_CONFIG or ~/.config/sitefail/config.yaml)")
	cmd.PersistentFlags().Float32Var(&o.QPS, "qps", 250, "client requests per second to the API server (client-go's default of 5 makes large moves crawl; lower it on a small control plane)")
	cmd.PersistentFlags().IntVar(&o.Burst, "burst", 500, "client request burst to the API server")
	o.profile.addFlags(cmd)

	cmd.AddCommand(
		newSitesCommand(o),
		newStatusCommand(o),
		newPlanCommand(o),
		newMoveCommand(o, false),
		newMoveCommand(o, true),
		newUICommand(o),
		newGitOpsCommand(o),
		newDrillCommand(o),
		newHistoryCommand(o),
		newReportCommand(o),
		newVersionCommand(o),
	)
	o.profile.finishAfter(cmd)
	return cmd
}

// complete resolves label keys from flags, then the config file, then the defaults.
func (o *Options) complete(cmd *cobra.Command) error {
	if o.QPS <= 0 || o.Burst <= 0 {
		return fmt.Errorf("--qps and --burst must be positive (got %v and %d)", o.QPS, o.Burst)
	}
	path, explicit := o.ConfigFile, o.ConfigFile != ""
	if !explicit {
		path = DefaultConfigFile()
	}
	var fc FileConfig
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			if fc, err = selector.ParseConfigFile(data); err != nil {
				return fmt.Errorf("config file %s: %v", path, err)
			}
		case explicit || !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("config file: %v", err)
		}
	}
	keys, err := selector.ResolveKeys(o.Keys, fc)
	if err != nil {
		return err
	}
	o.Keys = keys
	if o.Factory == nil {
		o.Factory = &configFactory{flags: o.ConfigFlags, qps: o.QPS, burst: o.Burst}
	}
	return nil
}

type configFactory struct {
	flags   *genericclioptions.ConfigFlags
	qps     float32
	burst   int
	clients *Clients
}

func (f *configFactory) Clients() (*Clients, error) {
	if f.clients != nil {
		return f.clients, nil
	}
	cfg, err := f.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("no usable kubeconfig: %v (set --kubeconfig or KUBECONFIG, or check --context)", err)
	}
	cfg.QPS, cfg.Burst = f.qps, f.burst
	// API warnings (a deprecated spec.running on every patched VM, say) once each, not
	// once per request: a 1,000-VM move would otherwise bury its progress.
	cfg.WarningHandler = rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true})
	retries := newOnceLog(os.Stderr)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return newRetryTransport(rt, retries) })
	// Built-in resources (nodes, pods, leases) travel as protobuf, as kubectl's own
	// clients do: decoding 1,000 launcher pods from JSON held up the first screen. The
	// KubeVirt and dynamic clients stay on JSON, which is all a CRD serves.
	kcfg := rest.CopyConfig(cfg)
	kcfg.ContentType = runtime.ContentTypeProtobuf
	kcfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	kc, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	raw, _ := f.flags.ToRawKubeConfigLoader().RawConfig()
	ctx := raw.CurrentContext
	if f.flags.Context != nil && *f.flags.Context != "" {
		ctx = *f.flags.Context
	}
	f.clients = &Clients{Kube: kc, Dynamic: dc, Config: cfg, Context: ctx}
	return f.clients, nil
}

func (f *configFactory) Namespace() (string, error) {
	ns, _, err := f.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("no usable kubeconfig: %v (set --kubeconfig or KUBECONFIG)", err)
	}
	return ns, nil
}
