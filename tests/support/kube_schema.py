"""Validate Kubernetes objects as the API server's OpenAPI schema would (kubernetes-validate,
strict: unknown fields are errors). 1.29 is the first release with native sidecars on by default."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.29.0"


def assert_valid(obj: dict[str, Any], *, version: str = KUBERNETES_VERSION) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(step) for step in exc.path)
        name = obj.get("metadata", {}).get("name") or obj.get("metadata", {}).get("generateName")
        raise AssertionError(f"{obj.get('kind')} {name}: {where}: {exc.message}") from exc
