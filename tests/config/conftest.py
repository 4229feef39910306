"""Shared inputs for the config tests: the seed fixture, its environment, and a minimal document."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures"

SEED_ENV = {
    "OPENAI_API_KEY": "sk-openai-primary-secret",
    "OPENAI_BACKUP_KEY": "sk-openai-backup-secret",
    "ANTHROPIC_API_KEY": "sk-ant-primary-secret",
    "ANTHROPIC_BACKUP_KEY": "sk-ant-backup-secret",
    "EMERGENCY_API_KEY": "sk-emergency-secret",
}


@pytest.fixture
def seed_path() -> Path:
    return FIXTURES / "seed-routing-strategies.yaml"


@pytest.fixture
def seed_env() -> dict[str, str]:
    return dict(SEED_ENV)


def minimal_document() -> dict[str, Any]:
    """The smallest valid config: two providers of one dialect and a catch-all rule."""
    return {
        "providers": {
            "openai-primary": {"type": "openai", "api_key": "sk-x"},
            "openai-backup": {"type": "openai", "api_key": "sk-y"},
        },
        "routing": {
            "rules": [
                {
                    "name": "default",
                    "matcher": {"always": True},
                    "strategy": {"type": "round-robin", "providers": ["openai-primary", "openai-backup"]},
                }
            ]
        },
    }


@pytest.fixture
def minimal() -> dict[str, Any]:
    return minimal_document()


@pytest.fixture
def dump() -> Callable[[dict[str, Any]], str]:
    def _dump(document: dict[str, Any]) -> str:
        return yaml.safe_dump(document, sort_keys=False)

    return _dump
