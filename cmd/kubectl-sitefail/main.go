// Command kubectl-sitefail is the kubectl plugin; kubectl finds it on PATH as `kubectl sitefail`.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/sitefail/kubectl-sitefail/pkg/plugin"
)

func main() {
	cmd := plugin.NewRootCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, nil)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(plugin.Code(err))
	}
}
