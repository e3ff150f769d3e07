package journal_test

import (
	"testing"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/journal/journaltest"
)

// FuzzRead: any annotations a VM may carry read into a journal whose predicates agree
// with each other, from the same generator the move simulator uses.
func FuzzRead(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, "releasing", "3")
	f.Add([]byte{9, 9, 9}, "done", "-1")
	f.Add([]byte{}, "", "x")
	f.Fuzz(func(t *testing.T, choices []byte, phase, attempts string) {
		i := 0
		pick := func(n int) int {
			if i >= len(choices) || n <= 0 {
				return 0
			}
			i++
			return int(choices[i-1]) % n
		}
		for _, a := range []map[string]string{
			journaltest.Draw(pick, []string{"Primary", "DR"}),
			{journal.Phase: phase, journal.Attempts: attempts, journal.To: "DR"},
		} {
			j := journal.Read(a)
			if j.Attempts < 0 {
				t.Fatalf("%v: negative attempts %d", a, j.Attempts)
			}
			if j.Released() && !j.Unfinished(j.To) {
				t.Fatalf("%v: released but not unfinished", a)
			}
			if j.Open() && (j.To == "" || !j.Known()) {
				t.Fatalf("%v: open without a target or with an unknown phase", a)
			}
			if j.Unfinished("DR") && j.To != "DR" {
				t.Fatalf("%v: unfinished towards a site it does not name", a)
			}
		}
	})
}
