package main

import "github.com/spf13/cobra"

func chaosCmd(g *globals) *cobra.Command { return &cobra.Command{Use: "chaos"} }
func benchCmd(g *globals) *cobra.Command { return &cobra.Command{Use: "bench"} }
