"""Subcommands of the `lethe` command line."""
