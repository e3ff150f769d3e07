//go:build tools

// Package tools pins crane, which pushes the image (crane push) and inspects it.
package tools

import _ "github.com/google/go-containerregistry/cmd/crane"
