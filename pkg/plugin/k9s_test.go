package plugin

import (
	"os"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"
)

type k9sPlugin struct {
	ShortCut    string   `json:"shortCut"`
	Description string   `json:"description"`
	Scopes      []string `json:"scopes"`
	Command     string   `json:"command"`
	Confirm     bool     `json:"confirm"`
	Dangerous   bool     `json:"dangerous"`
	Background  bool     `json:"background"`
	Args        []string `json:"args"`
}

// TestK9sPlugins checks that plugins.yaml parses, that every kubectl sitefail command
// line in it names a real subcommand with real flags, and that whatever changes the
// cluster asks for confirmation and is marked dangerous.
func TestK9sPlugins(t *testing.T) {
	data, err := os.ReadFile("../../plugins.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Plugins map[string]k9sPlugin `json:"plugins"`
	}
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Plugins) < 5 {
		t.Fatalf("want status, plan, move, plan-tier and move-tier; got %d plugins", len(file.Plugins))
	}
	keys := map[string]string{}
	for name, p := range file.Plugins {
		if other, dup := keys[p.ShortCut]; dup {
			t.Errorf("%s and %s share shortcut %s", name, other, p.ShortCut)
		}
		keys[p.ShortCut] = name
		if len(p.Scopes) == 0 || p.Scopes[0] != "virtualmachines" {
			t.Errorf("%s: scopes %v", name, p.Scopes)
		}
		line := strings.Join(p.Args, " ")
		if p.Command == "sh" {
			if len(p.Args) != 2 || p.Args[0] != "-c" {
				t.Fatalf("%s: sh plugins take -c SCRIPT", name)
			}
			line = strings.SplitN(p.Args[1], ";", 2)[0]
		} else if p.Command == "kubectl" {
			line = "kubectl " + line
		}
		words := strings.Fields(strings.NewReplacer(`"$CONTEXT"`, "ctx", `"$NAMESPACE"`, "ns", `"$NAME"`, "vm", "$CONTEXT", "ctx", "$NAMESPACE", "ns", "$NAME", "vm").Replace(line))
		if len(words) < 3 || words[0] != "kubectl" || words[1] != "sitefail" {
			t.Fatalf("%s: not a kubectl sitefail command: %q", name, line)
		}
		root := NewRootCommand(genericiooptions.NewTestIOStreamsDiscard(), nil)
		sub, rest, err := root.Find(words[2:])
		if err != nil || sub == root {
			t.Fatalf("%s: no subcommand %v: %v", name, words[2:], err)
		}
		if err := sub.ParseFlags(rest); err != nil {
			t.Fatalf("%s: %q: %v", name, line, err)
		}
		changes := sub.Name() == "move" || sub.Name() == "failback"
		if changes && (!p.Confirm || !p.Dangerous) {
			t.Errorf("%s runs %s but confirm=%v dangerous=%v", name, sub.Name(), p.Confirm, p.Dangerous)
		}
	}
}
