"""Detour: an LLM-routing sidecar that fails over on 429 inside the same request.

Data flows ingress → routing → dialects/providers (docs/architecture.md §1); `config` feeds them an immutable
snapshot and `app` wires the pieces together for the CLI.
"""

__version__ = "0.1.0"
