"""Detour's benchmark harness (docs/architecture.md §7, docs/benchmarks.md): what the sidecar adds to a call,
measured side by side with a direct call to a fast simulated upstream. `python -m bench` runs it."""
