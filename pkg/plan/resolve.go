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

// OtherSite resolves --to-other: in a cluster of two data sites (witness sites aside:
// they are never a target), the data site the selected VMs are not on. It fails when
// there are not exactly two data sites, or when the VMs are not all on one of them.
func OtherSite(s *snapshot.Snapshot, req Request) (string, error) {
	sites := s.DataSites()
	if len(sites) != 2 {
		var witnesses []string
		for _, site := range s.SiteNames() {
			if s.Witness(site) != "" {
				witnesses = append(witnesses, site)
			}
		}
		extra := ""
		if len(witnesses) > 0 {
			extra = " besides the witness site(s) " + strings.Join(witnesses, ", ")
		}
		return "", &SelectionError{fmt.Sprintf("--to-other needs exactly two sites that are not witnesses; this cluster has %d (%s)%s: use --to, or declare a site that holds only a quorum witness with --witness-site", len(sites), listOrNone(sites), extra)}
	}
	vms, err := SelectVMs(s, req)
	if err != nil {
		return "", err
	}
	at := map[string]bool{}
	for _, vm := range vms {
		at[location(vm)] = true
	}
	switch {
	case at[sites[0]] && at[sites[1]]:
		return "", &SelectionError{"--to-other: the selected VMs are on both sites; name the target with --to"}
	case len(at) != 1:
		return "", &SelectionError{fmt.Sprintf("--to-other: the selected VMs are on %s; name the target with --to", describeLocations(at))}
	case at[sites[0]]:
		return sites[1], nil
	case at[sites[1]]:
		return sites[0], nil
	}
	return "", &SelectionError{fmt.Sprintf("--to-other: the selected VMs are on %s, which is neither %s nor %s; name the target with --to", describeLocations(at), sites[0], sites[1])}
}

// describeLocations names the sites VMs are on, "no site" for unpinned stopped VMs.
func describeLocations(at map[string]bool) string {
	var out []string
	for site := range at {
		if site == "" {
			site = "no site"
		}
		out = append(out, site)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
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
