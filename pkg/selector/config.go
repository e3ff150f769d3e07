package selector

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// FileConfig is the optional config file a user may keep, in YAML.
type FileConfig struct {
	SiteLabel string `json:"siteLabel"`
	TierLabel string `json:"tierLabel"`
	// WitnessSites are sites that hold only a quorum witness or an arbiter: never a
	// move's target.
	WitnessSites []string `json:"witnessSites"`
}

// ParseConfigFile reads the config file's YAML; unknown keys are an error.
func ParseConfigFile(data []byte) (FileConfig, error) {
	var fc FileConfig
	if err := yaml.UnmarshalStrict(data, &fc); err != nil {
		return FileConfig{}, fmt.Errorf("%v (want keys siteLabel, tierLabel and witnessSites)", err)
	}
	return fc, nil
}

// ResolveKeys takes each label key from its flag, else the config file, else the
// default, and refuses one that is not a label key. Witness sites are the union of the
// flag's and the file's: declaring a site a witness only ever removes a target, so the
// flag adds to the file rather than hiding what it says.
func ResolveKeys(flags Keys, fc FileConfig) (Keys, error) {
	def := DefaultKeys()
	k := flags
	k.Site = firstNonEmpty(flags.Site, fc.SiteLabel, def.Site)
	k.Tier = firstNonEmpty(flags.Tier, fc.TierLabel, def.Tier)
	for _, f := range []struct{ flag, key string }{{"--site-label", k.Site}, {"--tier-label", k.Tier}} {
		if errs := validation.IsQualifiedName(f.key); len(errs) > 0 {
			return Keys{}, fmt.Errorf("%s %q (or the config file's key) is not a label key: %s", f.flag, f.key, strings.Join(errs, "; "))
		}
	}
	k.Witnesses = nil
	seen := map[string]bool{}
	for _, w := range append(append([]string{}, flags.Witnesses...), fc.WitnessSites...) {
		if w == "" || seen[w] {
			continue
		}
		if errs := validation.IsValidLabelValue(w); len(errs) > 0 {
			return Keys{}, fmt.Errorf("--witness-site %q (or the config file's witnessSites) is not a site name: %s", w, strings.Join(errs, "; "))
		}
		seen[w] = true
		k.Witnesses = append(k.Witnesses, w)
	}
	sort.Strings(k.Witnesses)
	return k, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
