package selector

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzConfigFile: any config file is either refused with an error, or gives label keys
// that are valid label keys; never a panic, never a key the API server would refuse at
// the first write.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"siteLabel: example.com/datacenter\ntierLabel: example.com/failover-tier\n",
		"siteLabel: ''\n",
		"siteLabel: 'bad key with spaces'\n",
		"siteLabel: [a, b]\n",
		"unknown: 1\n",
		"siteLabel: example.com/x\nsiteLabel: example.com/y\n",
		"\x00\xff",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := ParseConfigFile(data)
		if err != nil {
			return
		}
		keys, err := ResolveKeys(Keys{}, fc)
		if err != nil {
			return
		}
		for _, k := range []string{keys.Site, keys.Tier} {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Fatalf("config %q resolved to an invalid label key %q: %v", data, k, errs)
			}
		}
	})
}
