"""Hardening suites: `detour serve` as a real process, fed bad input, secrets, long mixed traffic and
mutated configs, proving that one request (or one config) never hurts the others (docs/testing.md)."""
