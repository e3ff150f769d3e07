package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Dynamic shell completion: site names from node labels, tiers and VM names from the
// cluster. Each completion is one LIST; failures complete nothing rather than erroring.

func (o *Options) completionClients(cmd *cobra.Command) (*Clients, bool) {
	if err := o.complete(cmd); err != nil {
		return nil, false
	}
	c, err := o.Factory.Clients()
	return c, err == nil
}

func completeSites(o *Options) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		c, ok := o.completionClients(cmd)
		if !ok {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		nodes, err := c.Kube.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: o.Keys.Site})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		seen := map[string]bool{}
		var out []string
		for _, n := range nodes.Items {
			if s := n.Labels[o.Keys.Site]; s != "" && !seen[s] && strings.HasPrefix(s, prefix) {
				seen[s] = true
				out = append(out, s)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func (o *Options) listVMLabels(cmd *cobra.Command, namespace string) ([]metav1.Object, bool) {
	c, ok := o.completionClients(cmd)
	if !ok {
		return nil, false
	}
	list, err := c.Dynamic.Resource(kubevirt.VMs).Namespace(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil, false
	}
	out := make([]metav1.Object, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, true
}

func completeTiers(o *Options) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		vms, ok := o.listVMLabels(cmd, "")
		if !ok {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		seen := map[int]bool{}
		var tiers []int
		for _, vm := range vms {
			if t, ok, err := selector.ParseTier(vm.GetLabels()[o.Keys.Tier]); err == nil && ok && !seen[t] {
				seen[t] = true
				tiers = append(tiers, t)
			}
		}
		sort.Ints(tiers)
		var out []string
		for _, t := range tiers {
			if s := fmt.Sprint(t); strings.HasPrefix(s, prefix) {
				out = append(out, s)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeVMs completes VM names in the namespace of -n (or the context), or
// NAMESPACE/NAME with -A.
func completeVMs(o *Options, sc *scope) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		ns := ""
		if !sc.allNamespaces {
			if err := o.complete(cmd); err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			ns, _ = o.Factory.Namespace()
		}
		vms, ok := o.listVMLabels(cmd, ns)
		if !ok {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, vm := range vms {
			name := vm.GetName()
			if ns == "" {
				name = vm.GetNamespace() + "/" + name
			}
			if strings.HasPrefix(name, prefix) {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
