package executor

import "time"

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
