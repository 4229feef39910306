"""The config schema (docs/architecture.md §2) as frozen pydantic models.

These models are the contract between the YAML a user writes and the code that routes: everything
the router needs is checked here, at load time, so nothing is validated per request. Cross-field
checks that need the whole document (provider ids, cross-dialect mappings) live in `validate.py`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderType(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


DEFAULT_BASE_URLS = {
    ProviderType.OPENAI: "https://api.openai.com/v1",
    ProviderType.ANTHROPIC: "https://api.anthropic.com",
}


# A body read whole (a non-streaming answer, an error) is capped per provider, by default at 32 MiB:
# the cap of an inbound request body (docs/architecture.md §8).
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


# What goes into a header sent to a provider is checked here, so a key pasted with a line break or
# typographic quotes is a config error at load, not a failure of every request. Messages never
# quote the value: it may be a credential.
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_TEXT = re.compile(r"[\x20-\x7e\t]*")


def _header_name(name: str) -> str:
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError("not an HTTP header name: letters, digits and !#$%&'*+-.^_`|~ only")
    return name


def _header_text(text: str) -> str:
    if not _FIELD_TEXT.fullmatch(text):
        raise ValueError(
            "must be printable ASCII on one line, as it is sent in an HTTP header"
            " (a key file's trailing line break counts)"
        )
    return text


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderText = Annotated[str, AfterValidator(_header_text)]


class ProviderConfig(_Strict):
    type: ProviderType
    base_url: str | None = None
    api_key: HeaderText | None = Field(default=None, repr=False)
    headers: dict[HeaderName, HeaderText] = Field(default_factory=dict)
    timeout_secs: float = Field(default=60, gt=0)
    connect_timeout_secs: float = Field(default=10, gt=0)
    first_token_timeout_secs: float | None = Field(default=None, gt=0)
    stream_idle_timeout_secs: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=1, ge=0, le=10)
    retry_backoff_ms: int = Field(default=100, ge=0)
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1)  # a larger body fails over
    supports_prefill: bool = False
    model: str | None = None
    model_map: dict[str, str] = Field(default_factory=dict)

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS[self.type]).rstrip("/")

    def upstream_model(self, requested: str) -> str:
        """The model this provider is asked for when a client requests `requested`."""
        if self.model is not None:
            return self.model
        return self.model_map.get(requested, requested)


class WeightedProvider(_Strict):
    id: str
    weight: int = Field(gt=0)


class MinRemaining(_Strict):
    """Proactive routing on the providers' remaining-quota headers (docs/scale-out.md): a candidate
    whose last-seen budget is under a threshold is tried after the others until that budget resets.
    `tokens` is compared with the budget left once this request's estimated input tokens are spent."""

    requests: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)


class _Proactive(_Strict):
    """The option every strategy has: off (None) unless configured."""

    min_remaining: MinRemaining | None = None


class RoundRobinStrategy(_Proactive):
    type: Literal["round-robin"]
    providers: list[str] = Field(min_length=1)


class WeightedRoundRobinStrategy(_Proactive):
    type: Literal["weighted-round-robin"]
    providers: list[WeightedProvider] = Field(min_length=1)


class RateLimitSettings(_Strict):
    """How long a rule's candidates stay limited after a 429 that names no wait (exponential
    backoff), and how long a request may wait out a limit when nothing else is available. Only the
    limits-alternative strategy sets them in YAML; every other rule routes with these defaults
    (`Rule.rate_limits`), so the defaults exist here and nowhere else."""

    exponential_backoff_base_secs: float = Field(default=60, gt=0)
    max_backoff_secs: float = Field(default=3600, gt=0)
    max_wait_for_retry_after_secs: float = Field(default=0, ge=0)


DEFAULT_RATE_LIMITS = RateLimitSettings()


class LimitsAlternativeStrategy(RateLimitSettings, _Proactive):
    type: Literal["limits-alternative"]
    primary_providers: list[str] = Field(min_length=1)
    alternative_providers: list[str] = Field(default_factory=list)


Strategy = Annotated[
    RoundRobinStrategy | WeightedRoundRobinStrategy | LimitsAlternativeStrategy,
    Field(discriminator="type"),
]


class Matcher(_Strict):
    model_pattern: re.Pattern[str] | None = None
    always: bool | None = None

    @field_validator("model_pattern", mode="before")
    @classmethod
    def _compile(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return re.compile(value)
            except re.error as exc:
                # The pattern is not quoted (the path names it): it might be a pasted credential.
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    def matches(self, model: str) -> bool:
        if self.always:
            return True
        return self.model_pattern is not None and self.model_pattern.search(model) is not None


class Rule(_Strict):
    name: str
    priority: int = 0
    matcher: Matcher
    strategy: Strategy | None = None
    primary: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    resume_streams: bool = False

    @property
    def rate_limits(self) -> RateLimitSettings:
        """The strategy's own settings where it has them, else the defaults."""
        strategy = self.strategy
        return strategy if isinstance(strategy, RateLimitSettings) else DEFAULT_RATE_LIMITS

    @property
    def min_remaining(self) -> MinRemaining | None:
        """The strategy's proactive threshold; None (off) for a rule without a strategy."""
        strategy = self.strategy
        return strategy.min_remaining if strategy is not None else None


class CircuitBreakerConfig(_Strict):
    failure_threshold: int = Field(default=5, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    timeout_secs: float = Field(default=30, gt=0)
    # Circuits are keyed by client-chosen model names: the table is bounded (routing/circuits.py).
    table_size: int = Field(default=1000, ge=1)


class RoutingConfig(_Strict):
    rules: list[Rule] = Field(min_length=1)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    rate_limit_table_size: int = Field(default=1000, ge=1)
    default_max_tokens: int = Field(default=4096, ge=1)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)


class StateBackend(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


class StateConfig(_Strict):
    """Where routing state lives beyond this process (docs/scale-out.md). `memory`, the default, is
    each sidecar on its own; `redis` shares limits and budgets with every sidecar on the same
    Redis and key prefix. The URL may hold a password: it is never shown (repr, messages, logs)."""

    backend: StateBackend = StateBackend.MEMORY
    url: str | None = Field(default=None, repr=False)
    key_prefix: str = Field(default="detour:", min_length=1, max_length=64)
    timeout_ms: int = Field(default=50, ge=1, le=60_000)  # one Redis command, never a request


class DetourConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    routing: RoutingConfig

    def rules_by_priority(self) -> list[Rule]:
        """Highest priority first; equal priorities keep their order in the file."""
        return sorted(self.routing.rules, key=lambda rule: -rule.priority)
