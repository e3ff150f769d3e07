package selector

import (
	"encoding/json"
	"testing"
)

func TestParseTierRange(t *testing.T) {
	for in, want := range map[string]TierRange{"1": {1, 1}, "2-4": {2, 4}, " 3 - 3 ": {3, 3}} {
		got, err := ParseTierRange(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "-1", "a", "3-2", "1-x", "1.5"} {
		if _, err := ParseTierRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseTier(t *testing.T) {
	if n, ok, err := ParseTier("2"); n != 2 || !ok || err != nil {
		t.Fatal(n, ok, err)
	}
	if _, ok, err := ParseTier(""); ok || err != nil {
		t.Fatal("empty tier is no tier")
	}
	if _, _, err := ParseTier("gold"); err == nil {
		t.Fatal("gold accepted")
	}
}

// The patch names only the site key: a JSON merge patch leaves every other
// nodeSelector key, affinity and tolerations as they are.
func TestSitePatchTouchesOnlyTheSiteKey(t *testing.T) {
	data, err := SitePatch("topology.kubernetes.io/site", "DR", "", map[string]string{"sitefail.io/move-phase": "patched"})
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	tspec := p["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	if len(tspec) != 1 {
		t.Fatalf("template spec patch touches %v", tspec)
	}
	sel := tspec["nodeSelector"].(map[string]any)
	if len(sel) != 1 || sel["topology.kubernetes.io/site"] != "DR" {
		t.Fatalf("nodeSelector patch %v", sel)
	}
	if _, err := SitePatch("k", "", "", nil); err == nil {
		t.Fatal("empty target accepted")
	}
}
