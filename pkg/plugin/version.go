package plugin

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Version is stamped at build time with -ldflags "-X ...plugin.Version=v1.2.3".
var Version = "dev"

func newVersionCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(o.Out, "kubectl-sitefail %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
		// The version needs no cluster and no config.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
	}
}
