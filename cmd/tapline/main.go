// Command tapline is the audit tool for Azure: an AI gateway that records
// every Azure OpenAI call, and a collector of management-group Activity Logs.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
