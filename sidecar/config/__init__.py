"""The config layer: the schema of ``routes.yaml`` and the pure pipeline that loads it
(docs/architecture.md §2)."""

from sidecar.config.loader import LoadedConfig, load_config_file, load_config_text
from sidecar.config.models import (
    DEFAULT_BASE_URLS,
    CircuitBreakerConfig,
    DetourConfig,
    LimitsAlternativeStrategy,
    Matcher,
    ProviderConfig,
    ProviderType,
    RoundRobinStrategy,
    RoutingConfig,
    Rule,
    ServerConfig,
    Strategy,
    WeightedProvider,
    WeightedRoundRobinStrategy,
)
from sidecar.config.validate import check_references

__all__ = [
    "DEFAULT_BASE_URLS",
    "CircuitBreakerConfig",
    "DetourConfig",
    "LimitsAlternativeStrategy",
    "LoadedConfig",
    "Matcher",
    "ProviderConfig",
    "ProviderType",
    "RoundRobinStrategy",
    "RoutingConfig",
    "Rule",
    "ServerConfig",
    "Strategy",
    "WeightedProvider",
    "WeightedRoundRobinStrategy",
    "check_references",
    "load_config_file",
    "load_config_text",
]
