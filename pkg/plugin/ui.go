package plugin

import (
	"errors"

	"github.com/spf13/cobra"
)

func newUICommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "ui",
		Short: "Interactive incident view (not built yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("the ui command is not built yet")
		},
	}
}
