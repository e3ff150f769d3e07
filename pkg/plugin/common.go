package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// scope is the namespace selection shared by the VM-facing commands.
type scope struct {
	allNamespaces bool
	labelSelector string
	namespace     string
}

func (s *scope) addFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&s.allNamespaces, "all-namespaces", "A", false, "act on VMs in all namespaces")
	cmd.Flags().StringVarP(&s.labelSelector, "selector", "l", "", "only VMs matching this label selector, e.g. -l app=db")
}

func (s *scope) complete(o *Options) error {
	if s.allNamespaces {
		s.namespace = ""
		return nil
	}
	ns, err := o.Factory.Namespace()
	if err != nil {
		return err
	}
	s.namespace = ns
	return nil
}

// vmKeys turns VM arguments (NAME or NAMESPACE/NAME) into namespace/name keys.
func (s *scope) vmKeys(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		ns, name, found := strings.Cut(a, "/")
		if !found {
			if s.namespace == "" {
				return nil, fmt.Errorf("VM %q: with -A, name VMs as NAMESPACE/NAME", a)
			}
			ns, name = s.namespace, a
		}
		if ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("VM %q: want NAME or NAMESPACE/NAME", a)
		}
		out = append(out, ns+"/"+name)
	}
	return out, nil
}

// readSnapshot reads the cluster for a command. A request that names VMs in other
// namespaces reads all namespaces.
func (o *Options) readSnapshot(ctx context.Context, namespace, labelSelector string) (*snapshot.Snapshot, *Clients, error) {
	c, err := o.Factory.Clients()
	if err != nil {
		return nil, nil, err
	}
	s, err := snapshot.Read(ctx, snapshot.Source{Kube: c.Kube, Dynamic: c.Dynamic, Config: c.Config, Namespace: namespace, LabelSelector: labelSelector, Keys: o.Keys})
	if err != nil {
		return nil, nil, clusterError(err, c)
	}
	return s, c, nil
}

// clusterError explains transport failures, which client-go reports tersely.
func clusterError(err error, c *Clients) error {
	var ue *url.Error
	var ne net.Error
	if apierrors.IsUnauthorized(err) {
		return fmt.Errorf("the cluster refused your credentials (context %q): %v; log in again or check --kubeconfig", c.Context, err)
	}
	if errors.As(err, &ue) || errors.As(err, &ne) {
		host := ""
		if c.Config != nil {
			host = c.Config.Host
		}
		return fmt.Errorf("cannot reach the cluster at %s (context %q): %v; check --context, --kubeconfig or KUBECONFIG, and that the API server is up", host, c.Context, err)
	}
	return err
}

// outputFormat validates -o against the formats a command supports.
func outputFormat(o string, allowed ...string) error {
	for _, a := range allowed {
		if o == a {
			return nil
		}
	}
	return fmt.Errorf("-o %q is not supported here: use one of %s", o, strings.Join(quoteAll(allowed), ", "))
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		if v == "" {
			v = "(table)"
		}
		out[i] = v
	}
	return out
}

// printStructured writes v as JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// table writes rows through kubectl's tab writer.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := printers.GetNewTabWriter(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tierString(t int) string {
	if t == 0 {
		return "-"
	}
	return fmt.Sprint(t)
}

// parseTierFlag parses --tier when set.
func parseTierFlag(s string) (*selector.TierRange, error) {
	if s == "" {
		return nil, nil
	}
	r, err := selector.ParseTierRange(s)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func validateLabelValue(v string) string {
	return strings.Join(validation.IsValidLabelValue(v), "; ")
}
