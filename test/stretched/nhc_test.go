package stretched

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two clusters' managers take turns: while one holds the lock, another waits and gives
// up after its wait; once it is released (twice does no harm), the next one takes it.
func TestNHCLockIsTakenInTurn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nhc.lock")
	ctx := context.Background()
	unlock, err := lockFile(ctx, path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockFile(ctx, path, 1500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "still locked") {
		t.Fatalf("a second lock while the first is held: %v; want it to give up", err)
	}
	unlock()
	unlock()
	again, err := lockFile(ctx, path, time.Second)
	if err != nil {
		t.Fatalf("the lock after its release: %v", err)
	}
	again()
}
