"""Dialects: what the OpenAI and Anthropic wire formats mean, as pure functions.

Parsing inbound requests, rendering errors in a client's dialect, recognising stream events and
translating between the two APIs. Nothing here does I/O; the router calls these with data.
"""

from sidecar.config.models import ProviderType as Dialect

__all__ = ["Dialect"]
