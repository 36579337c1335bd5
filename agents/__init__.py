"""Faust agents: thin loops that decode, call the policy core and produce."""
