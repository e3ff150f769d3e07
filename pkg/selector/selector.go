// Package selector holds the rules that tie nodes and VMs to sites and tiers: the label
// keys, tier parsing and ranges, and the nodeSelector patch that touches only the site key.
package selector

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

const (
	// DefaultSiteKey is the node label, and VM template nodeSelector key, that names a site.
	DefaultSiteKey = "topology.kubernetes.io/site"
	// DefaultTierKey is the VM label that gives its failover tier (1 moves first).
	DefaultTierKey = "sitefail.io/tier"
)

// Keys are the label keys in force for one invocation, and the sites declared
// witnesses (--witness-site, the config file's witnessSites), which travel with them to
// every snapshot: a witness is a property of the sites as the operator names them.
type Keys struct {
	Site string `json:"siteLabel"`
	Tier string `json:"tierLabel"`
	// Witnesses are the declared witness sites, sorted; nodes' labels may make more
	// (snapshot.Witness).
	Witnesses []string `json:"witnessSites,omitempty"`
}

// DefaultKeys returns the keys used when neither flags nor config override them.
func DefaultKeys() Keys { return Keys{Site: DefaultSiteKey, Tier: DefaultTierKey} }

// ParseTier reads a tier label value. Tiers are positive integers; an empty value means
// the VM has no tier (it moves after every tiered VM).
func ParseTier(v string) (tier int, ok bool, err error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, false, fmt.Errorf("tier %q is not a positive integer", v)
	}
	return n, true, nil
}

// TierRange is an inclusive range of tiers; the zero value selects nothing.
type TierRange struct {
	Min, Max int
}

// ParseTierRange accepts "N" or "N-M" with 1 <= N <= M.
func ParseTierRange(s string) (TierRange, error) {
	s = strings.TrimSpace(s)
	lo, hi, isRange := strings.Cut(s, "-")
	min, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil || min < 1 {
		return TierRange{}, fmt.Errorf("--tier %q: want a positive integer N or a range N-M, e.g. --tier 1 or --tier 1-3", s)
	}
	max := min
	if isRange {
		max, err = strconv.Atoi(strings.TrimSpace(hi))
		if err != nil || max < min {
			return TierRange{}, fmt.Errorf("--tier %q: want a range N-M with N <= M, e.g. --tier 1-3", s)
		}
	}
	return TierRange{Min: min, Max: max}, nil
}

// Contains reports whether tier t lies in the range.
func (r TierRange) Contains(t int) bool { return t >= r.Min && t <= r.Max }

func (r TierRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// SitePatch returns a JSON merge patch that sets the site key of a VM template's
// nodeSelector and the given annotations in one request. A merge patch touches only the
// keys it names: other nodeSelector keys, affinity and tolerations stay as they are, and
// sending it twice changes nothing, which is what a resumed move needs.
// uid, when set, makes the patch a precondition on the object's UID.
func SitePatch(siteKey, to, uid string, annotations map[string]string) ([]byte, error) {
	if to == "" {
		return nil, fmt.Errorf("target site is empty")
	}
	return json.Marshal(map[string]any{
		"metadata": metadata(uid, annotations),
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"nodeSelector": map[string]string{siteKey: to},
		}}},
	})
}

// AnnotationPatch returns a JSON merge patch that sets annotations, preconditioned on
// the object's UID when uid is set.
func AnnotationPatch(uid string, annotations map[string]string) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": metadata(uid, annotations)})
}

func metadata(uid string, annotations map[string]string) map[string]any {
	m := map[string]any{"annotations": annotations}
	if uid != "" {
		m["uid"] = uid
	}
	return m
}

// TierOrder is a tier's place in a move: tiers ascending, untiered (0) VMs last. Every
// ordering of tiers (plan, executor, report, sites table, TUI) goes through it.
func TierOrder(t int) int {
	if t == 0 {
		return int(^uint(0) >> 1)
	}
	return t
}

// TierLess orders two tiers as a move runs them.
func TierLess(a, b int) bool { return TierOrder(a) < TierOrder(b) }

// TierName names a tier in messages: its number, or "untiered".
func TierName(t int) string {
	if t == 0 {
		return "untiered"
	}
	return strconv.Itoa(t)
}
