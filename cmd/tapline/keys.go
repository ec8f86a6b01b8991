package main

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/internal/auth"
)

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func newKeys(e *env) *cobra.Command {
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Manage gateway keys",
	}
	var name string
	gen := &cobra.Command{
		Use:   "new --name NAME",
		Short: "Print a new gateway key and its configuration entry",
		Long: `Prints a new random gateway key (256 bits) alone on the first line of
stdout, then the YAML entry to add under gateway.auth.keys. The entry holds
only the key's SHA-256: the key itself is shown once and stored nowhere.
Give it to the caller, who sends it as "api-key: KEY" or
"Authorization: Bearer KEY".`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if !keyNameRE.MatchString(name) {
				return usagef("--name must be 1-64 letters, digits, '.', '_' or '-' (got %q)", name)
			}
			k, hash, err := auth.NewKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, k)
			fmt.Fprintf(e.stdout, "# add under gateway.auth.keys:\n- {name: %s, hash: %q}\n", name, hash)
			return nil
		},
	}
	gen.Flags().StringVar(&name, "name", "", "name of the key's holder, recorded as principal.key_name")
	keys.AddCommand(gen)
	return keys
}
