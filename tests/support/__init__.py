"""Shared test helpers: a running sidecar on 127.0.0.1, config builders and a hand-driven clock."""
