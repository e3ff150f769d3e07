package selector

import (
	"encoding/json"
	"testing"
)

// FuzzParseTierRange: any input either parses to a range that contains its bounds and
// prints back to something that parses to the same range, or is refused.
func FuzzParseTierRange(f *testing.F) {
	for _, s := range []string{"1", "1-3", "3-1", "0", "-1", "one", "1-", "-", "1--2", " 2 ", "99999999999999999999", "1-2-3", "", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseTierRange(s)
		if err != nil {
			return
		}
		if r.Min < 1 || r.Max < r.Min || !r.Contains(r.Min) || !r.Contains(r.Max) {
			t.Fatalf("%q parsed to %+v", s, r)
		}
		back, err := ParseTierRange(r.String())
		if err != nil || back != r {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, r, r.String(), back, err)
		}
	})
}

// FuzzSitePatch: whatever the site key and site, the patch is valid JSON that sets
// exactly that key of the template's nodeSelector, and the journal annotations.
func FuzzSitePatch(f *testing.F) {
	f.Add("topology.kubernetes.io/site", "DR", "sf-1")
	f.Add("a/b~c", "1", "")
	f.Add("site", "true", "x\"y")
	f.Add("k", "\u2028\x00", "🙂")
	f.Fuzz(func(t *testing.T, key, site, moveID string) {
		if key == "" {
			return
		}
		data, err := SitePatch(key, site, "", map[string]string{"sitefail.io/move-id": moveID})
		if site == "" {
			if err == nil {
				t.Fatal("an empty site was accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						NodeSelector map[string]any `json:"nodeSelector"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatalf("invalid JSON %q: %v", data, err)
		}
		sel := p.Spec.Template.Spec.NodeSelector
		if len(sel) != 1 || sel[asJSON(key)] != asJSON(site) || p.Metadata.Annotations["sitefail.io/move-id"] != asJSON(moveID) {
			t.Fatalf("patch %s does not set exactly %q=%q", data, key, site)
		}
	})
}

// asJSON is s as it reads back from JSON (invalid UTF-8 becomes U+FFFD).
func asJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}
