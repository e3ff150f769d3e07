package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// location is where a VM is: the site of its instance's node, else its home site.
func location(vm *snapshot.VM) string {
	if vm.Instance != nil && vm.Instance.NodeName != "" {
		return vm.CurrentSite
	}
	return vm.HomeSite
}

// OtherSite resolves --to-other: in a two-site cluster, the site the selected VMs are not
// on. It fails when there are not exactly two sites or the VMs are on both.
func OtherSite(s *snapshot.Snapshot, req Request) (string, error) {
	sites := s.SiteNames()
	if len(sites) != 2 {
		return "", &SelectionError{fmt.Sprintf("--to-other needs exactly two sites; this cluster has %d (%s): use --to", len(sites), strings.Join(sites, ", "))}
	}
	vms, err := SelectVMs(s, req)
	if err != nil {
		return "", err
	}
	at := map[string]bool{}
	for _, vm := range vms {
		at[location(vm)] = true
	}
	if len(at) != 1 {
		return "", &SelectionError{"--to-other: the selected VMs are on both sites; name the target with --to"}
	}
	if at[sites[0]] {
		return sites[1], nil
	}
	return sites[0], nil
}

// Failback is where a failback sends the selected VMs, read from their journals.
type Failback struct {
	// To is the site their last finished move took them from.
	To string
	// VMs are the namespace/name keys that go back.
	VMs []string
	// Dropped are selected VMs without a finished move in their journal, or moved
	// since by hand: they stay where they are.
	Dropped []string
}

// FailbackTarget reads the journals of the selected VMs. It fails when none carries a
// finished move, or when they came from different sites.
func FailbackTarget(s *snapshot.Snapshot, req Request) (*Failback, error) {
	vms, err := SelectVMs(s, req)
	if err != nil {
		return nil, err
	}
	fb := &Failback{}
	froms := map[string][]string{}
	for _, vm := range vms {
		j := journal.Read(vm.Annotations)
		if j.From == "" || j.To != vm.HomeSite {
			fb.Dropped = append(fb.Dropped, vm.Key())
			continue
		}
		froms[j.From] = append(froms[j.From], vm.Key())
		fb.VMs = append(fb.VMs, vm.Key())
	}
	if len(froms) == 0 {
		return nil, &SelectionError{"no selected VM carries a finished move in its journal (sitefail.io/move-from): nothing to fail back; use 'move --to SITE' instead"}
	}
	if len(froms) > 1 {
		var parts []string
		for f, keys := range froms {
			parts = append(parts, fmt.Sprintf("%d from %s", len(keys), f))
		}
		sort.Strings(parts)
		return nil, &SelectionError{fmt.Sprintf("the selected VMs came from different sites (%s): fail them back with 'move --to SITE' per site", strings.Join(parts, ", "))}
	}
	for f := range froms {
		fb.To = f
	}
	sort.Strings(fb.VMs)
	sort.Strings(fb.Dropped)
	return fb, nil
}
