//go:build tools

// Package tools pins GoReleaser for make dist.
package tools

import _ "github.com/goreleaser/goreleaser/v2"
