"""`inject.yaml`: what `detour inject` puts into a pod, as a frozen pydantic model.

Every key is optional (docs/kubernetes.md lists them with their defaults). The file is checked like
`routes.yaml`: unknown keys and bad values are `ConfigError`s naming their path, so a typo in the
chart's values fails the injector at start-up instead of producing pods that cannot start.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from sidecar.config.loader import parse_yaml_mapping
from sidecar.config.validate import schema_problems
from sidecar.errors import ConfigError, ConfigProblem

# Kubernetes' own grammars: a resource quantity ("250m", "128Mi", "1.5"), an object name (DNS-1123
# subdomain) and an environment variable name (C identifier, as the API server requires by default).
# (Unsigned: a negative request or limit is valid grammar but rejected by the API server.)
QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i?|[munkMGTPE])?$")
OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quantity(value: str) -> str:
    if not QUANTITY.fullmatch(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 100m, 128Mi)")
    return value


def _object_name(value: str) -> str:
    if len(value) > 253 or not OBJECT_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes object name")
    return value


def _env_names(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
    return env


Quantity = Annotated[str, AfterValidator(_quantity)]
ObjectName = Annotated[str, AfterValidator(_object_name)]
EnvVars = Annotated[dict[str, str], AfterValidator(_env_names)]
Port = Annotated[int, Field(ge=1, le=65535)]
ResourceName = Literal["cpu", "memory", "ephemeral-storage"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """A core/v1 `ResourceRequirements` (requests and limits only)."""

    requests: dict[ResourceName, Quantity] = Field(default_factory=dict)
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict)

    def as_kubernetes(self) -> dict[str, dict[str, str]]:
        return {
            kind: {str(name): quantity for name, quantity in values.items()}
            for kind, values in (("requests", self.requests), ("limits", self.limits))
            if values
        }


DEFAULT_RESOURCES = Resources(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"})


class InjectedTelemetry(_Strict):
    otlp_endpoint: str | None = None  # when set, the sidecar exports (docs/telemetry.md)
    otlp_protocol: Literal["grpc", "http/protobuf", "http/json"] | None = None
    env: EnvVars = Field(default_factory=dict)  # more OTEL_* settings (sampler, export interval, ...)


class InjectorSettings(_Strict):
    configmap: ObjectName = "detour-routes"
    configmap_key: str = Field(default="routes.yaml", min_length=1)
    secret: ObjectName | None = None
    sidecar_mode: Literal["native", "container"] = "native"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    port: Port = 8081
    health_port: Port = 8083
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 8082  # on 127.0.0.1; 0: no gRPC API
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    resources: Resources = DEFAULT_RESOURCES
    telemetry: InjectedTelemetry = Field(default_factory=InjectedTelemetry)
    env: EnvVars = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct_ports(self) -> InjectorSettings:
        if self.port == self.health_port:
            raise ValueError("port and health_port must differ")
        if self.grpc_port in (self.port, self.health_port):
            raise ValueError("grpc_port must differ from port and health_port")
        return self


def load_injector_settings(path: str | os.PathLike[str] | None) -> InjectorSettings:
    """Read `inject.yaml`; no file means every default. Raises `ConfigError` naming each problem."""
    if path is None:
        return InjectorSettings()
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem("", f"cannot read {name}: {exc}")]) from exc
    return parse_injector_settings(text)


def parse_injector_settings(text: str) -> InjectorSettings:
    document = parse_yaml_mapping(text) if text.strip() else {}
    try:
        return InjectorSettings.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(schema_problems(exc, document, InjectorSettings)) from exc
