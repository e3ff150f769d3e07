package selector

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// FileConfig is the optional config file a user may keep, in YAML.
type FileConfig struct {
	SiteLabel string `json:"siteLabel"`
	TierLabel string `json:"tierLabel"`
}

// ParseConfigFile reads the config file's YAML; unknown keys are an error.
func ParseConfigFile(data []byte) (FileConfig, error) {
	var fc FileConfig
	if err := yaml.UnmarshalStrict(data, &fc); err != nil {
		return FileConfig{}, fmt.Errorf("%v (want keys siteLabel and tierLabel)", err)
	}
	return fc, nil
}

// ResolveKeys takes each label key from its flag, else the config file, else the
// default, and refuses one that is not a label key.
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
