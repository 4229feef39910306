import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class State(_message.Message):
    __slots__ = ("config", "rate_limited", "rate_limited_total", "circuits", "circuits_total", "counters", "reload", "rate_limit_table", "circuit_table")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITED_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CIRCUITS_FIELD_NUMBER: _ClassVar[int]
    CIRCUITS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_TABLE_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_TABLE_FIELD_NUMBER: _ClassVar[int]
    config: ConfigInfo
    rate_limited: _containers.RepeatedCompositeFieldContainer[Limit]
    rate_limited_total: int
    circuits: _containers.RepeatedCompositeFieldContainer[Circuit]
    circuits_total: int
    counters: _containers.ScalarMap[str, int]
    reload: ReloadInfo
    rate_limit_table: TableInfo
    circuit_table: TableInfo
    def __init__(self, config: _Optional[_Union[ConfigInfo, _Mapping]] = ..., rate_limited: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ..., rate_limited_total: _Optional[int] = ..., circuits: _Optional[_Iterable[_Union[Circuit, _Mapping]]] = ..., circuits_total: _Optional[int] = ..., counters: _Optional[_Mapping[str, int]] = ..., reload: _Optional[_Union[ReloadInfo, _Mapping]] = ..., rate_limit_table: _Optional[_Union[TableInfo, _Mapping]] = ..., circuit_table: _Optional[_Union[TableInfo, _Mapping]] = ...) -> None: ...

class ConfigInfo(_message.Message):
    __slots__ = ("version", "source", "providers", "rules")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    version: str
    source: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    rules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., source: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ..., rules: _Optional[_Iterable[str]] = ...) -> None: ...

class Limit(_message.Message):
    __slots__ = ("provider", "model", "reason", "wait_source", "wait_s", "remaining_s", "expires_at", "consecutive_429s")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    REMAINING_S_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_429S_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    reason: str
    wait_source: str
    wait_s: float
    remaining_s: float
    expires_at: _timestamp_pb2.Timestamp
    consecutive_429s: int
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., reason: _Optional[str] = ..., wait_source: _Optional[str] = ..., wait_s: _Optional[float] = ..., remaining_s: _Optional[float] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consecutive_429s: _Optional[int] = ...) -> None: ...

class Circuit(_message.Message):
    __slots__ = ("provider", "model", "state", "consecutive_failures", "retry_in_s")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_S_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    state: str
    consecutive_failures: int
    retry_in_s: float
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., state: _Optional[str] = ..., consecutive_failures: _Optional[int] = ..., retry_in_s: _Optional[float] = ...) -> None: ...

class ReloadInfo(_message.Message):
    __slots__ = ("source", "version", "last_result", "last_problems", "last_change_at", "applied", "rejected", "failed", "last_failure")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_RESULT_FIELD_NUMBER: _ClassVar[int]
    LAST_PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_AT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    source: str
    version: str
    last_result: str
    last_problems: _containers.RepeatedScalarFieldContainer[str]
    last_change_at: _timestamp_pb2.Timestamp
    applied: int
    rejected: int
    failed: int
    last_failure: str
    def __init__(self, source: _Optional[str] = ..., version: _Optional[str] = ..., last_result: _Optional[str] = ..., last_problems: _Optional[_Iterable[str]] = ..., last_change_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., applied: _Optional[int] = ..., rejected: _Optional[int] = ..., failed: _Optional[int] = ..., last_failure: _Optional[str] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ("size", "capacity", "evictions")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    size: int
    capacity: int
    evictions: int
    def __init__(self, size: _Optional[int] = ..., capacity: _Optional[int] = ..., evictions: _Optional[int] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Event(_message.Message):
    __slots__ = ("at", "rate_limited", "failover", "config_applied", "config_rejected", "limit_cleared", "dropped")
    AT_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITED_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_APPLIED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_REJECTED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_CLEARED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    rate_limited: RateLimitedEvent
    failover: FailoverEvent
    config_applied: ConfigAppliedEvent
    config_rejected: ConfigRejectedEvent
    limit_cleared: LimitClearedEvent
    dropped: int
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rate_limited: _Optional[_Union[RateLimitedEvent, _Mapping]] = ..., failover: _Optional[_Union[FailoverEvent, _Mapping]] = ..., config_applied: _Optional[_Union[ConfigAppliedEvent, _Mapping]] = ..., config_rejected: _Optional[_Union[ConfigRejectedEvent, _Mapping]] = ..., limit_cleared: _Optional[_Union[LimitClearedEvent, _Mapping]] = ..., dropped: _Optional[int] = ...) -> None: ...

class RateLimitedEvent(_message.Message):
    __slots__ = ("provider", "model", "wait_s", "wait_source", "reason")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    WAIT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    wait_s: float
    wait_source: str
    reason: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., wait_s: _Optional[float] = ..., wait_source: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FailoverEvent(_message.Message):
    __slots__ = ("from_provider", "from_model", "to_provider", "to_model", "reason")
    FROM_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    FROM_MODEL_FIELD_NUMBER: _ClassVar[int]
    TO_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    from_provider: str
    from_model: str
    to_provider: str
    to_model: str
    reason: str
    def __init__(self, from_provider: _Optional[str] = ..., from_model: _Optional[str] = ..., to_provider: _Optional[str] = ..., to_model: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ConfigAppliedEvent(_message.Message):
    __slots__ = ("version", "source")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    version: str
    source: str
    def __init__(self, version: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ConfigRejectedEvent(_message.Message):
    __slots__ = ("source", "result", "problems", "active_version")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    source: str
    result: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    active_version: str
    def __init__(self, source: _Optional[str] = ..., result: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ..., active_version: _Optional[str] = ...) -> None: ...

class LimitClearedEvent(_message.Message):
    __slots__ = ("provider", "model", "cleared")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    cleared: int
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., cleared: _Optional[int] = ...) -> None: ...

class ClearLimitRequest(_message.Message):
    __slots__ = ("provider", "model")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ClearLimitResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: int
    def __init__(self, cleared: _Optional[int] = ...) -> None: ...
