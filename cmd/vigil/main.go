// Command vigil is the vigil cluster manager: the agent and its CLI.
package main

import (
	"context"
	"os"

	"github.com/vigil-cluster/vigil/internal/cli"
)

func main() { os.Exit(cli.Main(context.Background(), os.Args[1:])) }
