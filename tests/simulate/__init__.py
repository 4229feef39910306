"""Tests of the simulated providers (sidecar.simulate)."""
