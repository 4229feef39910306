"""Config fuzz: seeded mutations of valid configs, first through the loader (each loads, or is a
`ConfigError` whose problems name where — never another exception, never a secret), then through
a running `detour serve --config FILE` that reloads: each mutation is applied whole or rejected
whole, requests are always served by the last good config, and reloading is still alive after
the batch. `DETOUR_FUZZ_MUTATIONS`, `DETOUR_FUZZ_LIVE_MUTATIONS` and `DETOUR_FUZZ_SEED` set the
size and the seed (docs/testing.md)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import sys
import time
from collections import Counter

import httpx
import pytest

from sidecar.config.loader import LoadedConfig, load_config_file, load_config_text
from sidecar.errors import ConfigError
from sidecar.simulate import SimulatedProvider
from tests.hardening.config_mutations import (
    LITERAL_KEY,
    MARK,
    SEED_ENV,
    Mutation,
    billion_laughs,
    fixture_seed,
    minimal_seed,
    mutate,
)
from tests.hardening.serving import Serving, detour_serve
from tests.support.running import config_text, limits_alternative_rule, provider

MUTATIONS = int(os.environ.get("DETOUR_FUZZ_MUTATIONS", "250"))
LIVE_MUTATIONS = int(os.environ.get("DETOUR_FUZZ_LIVE_MUTATIONS", "30"))
SEED = int(os.environ.get("DETOUR_FUZZ_SEED", "1729"))
SECRETS = {*SEED_ENV.values(), LITERAL_KEY}
# Problems that cannot name a key: the YAML itself is broken, or the document as a whole is wrong.
WHOLE_DOCUMENT = (
    "invalid YAML at line ",
    "invalid YAML: ",
    "the config must be a mapping at top level",
    "cannot read config file",
    "the config is nested too deeply",
)
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}


def load(mutation: Mutation, directory: pathlib.Path) -> LoadedConfig:
    if isinstance(mutation.text, bytes):  # bytes that are not UTF-8 only arrive through a file
        path = directory / "mutated.yaml"
        path.write_bytes(mutation.text)
        return load_config_file(path, env=SEED_ENV)
    return load_config_text(mutation.text, source="fuzz", env=SEED_ENV)


def complaints_about(error: ConfigError) -> list[str]:
    """What is wrong with how a rejection was reported (nothing, for a good report)."""
    found = []
    if not error.problems:
        found.append("a ConfigError without problems")
    for problem in error.problems:
        text = str(problem)
        if not problem.path and not problem.message.startswith(WHOLE_DOCUMENT):
            found.append(f"no path: {text[:160]}")
        if "could not be loaded (unexpected" in text:
            found.append(f"an exception no step expected: {text[:160]}")
        if MARK in text or any(secret in text for secret in SECRETS):
            found.append(f"a secret quoted: {text[:160]}")
    return found


def test_every_mutation_loads_or_is_rejected_by_path_without_a_secret(tmp_path: pathlib.Path) -> None:
    rng = random.Random(SEED)
    seeds = [fixture_seed(), minimal_seed()]
    outcomes: Counter[str] = Counter()
    failures = []
    slowest = 0.0
    for index in range(MUTATIONS):
        mutation = mutate(seeds[index // 2 % len(seeds)], rng, index)
        began = time.perf_counter()
        try:
            load(mutation, tmp_path)
            outcomes["loaded"] += 1
        except ConfigError as error:
            outcomes["rejected"] += 1
            failures += [f"#{index} {mutation.name}: {complaint}" for complaint in complaints_about(error)]
        except Exception as error:  # the property under test: nothing else escapes
            failures.append(f"#{index} {mutation.name}: {type(error).__name__}: {str(error)[:160]}")
        slowest = max(slowest, time.perf_counter() - began)

    assert failures == [], f"seed {SEED}: " + "\n".join(failures[:20])
    assert outcomes["rejected"] > MUTATIONS // 2, outcomes
    assert outcomes["loaded"] > 0, outcomes
    assert slowest < 5.0, f"one mutation took {slowest:.2f} s to load"


# --- the same against a running sidecar ------------------------------------------------------------


def live_seed(p0: SimulatedProvider, p1: SimulatedProvider) -> str:
    providers = {
        "p0": provider("openai", p0.base_url, api_key="${OPENAI_API_KEY}"),
        "p1": provider("openai", p1.base_url, api_key=LITERAL_KEY),
    }
    rules = [
        {**limits_alternative_rule(["p0"], ["p1"], pattern="^gpt-"), "name": "gpt"},
        {"name": "rest", "priority": 0, "matcher": {"always": True}, "primary": "p1"},
    ]
    return config_text(providers, rules)


def unique(text: str | bytes, note: str) -> str | bytes:
    """Each text written differs from all before it (the watcher acts on changes only)."""
    return text + f"\n# {note}\n" if isinstance(text, str) else text + f"\n# {note}\n".encode()


def expected_outcome(text: str | bytes, local: set[str]) -> tuple[str, LoadedConfig | None]:
    """What the reloader must do with `text`; "elsewhere" for a valid config that would send
    requests beyond the simulated providers (never written: no network beyond 127.0.0.1)."""
    if isinstance(text, bytes) or _not_utf8(text):
        return "unreadable", None
    try:
        loaded = load_config_text(text, source="expected", env=SEED_ENV)
    except ConfigError:
        return "rejected", None
    urls = {config.effective_base_url for config in loaded.config.providers.values()}
    return ("applied" if urls <= local else "elsewhere"), loaded


def _not_utf8(text: str) -> bool:
    """A lone surrogate: the file written from it is not UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


async def assert_in_force(serving: Serving, loaded: LoadedConfig) -> None:
    """/admin/state shows exactly `loaded`: its version, providers and rules, nothing half-applied."""
    state = (await serving.state())["config"]
    assert state["version"] == loaded.version
    assert state["providers"] == sorted(loaded.config.providers)
    assert state["rules"] == [rule.name for rule in loaded.config.rules_by_priority()]


async def ask(serving: Serving) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(
            serving.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-fuzz"}
        )


async def test_a_reloading_sidecar_applies_or_rejects_each_mutation_whole(tmp_path: pathlib.Path) -> None:
    rng = random.Random(SEED + 1)
    env = {**os.environ, **SEED_ENV}
    async with SimulatedProvider("openai", name="p0") as p0, SimulatedProvider("openai", name="p1") as p1:
        seed = live_seed(p0, p1)
        local = {p0.base_url.rstrip("/"), p1.base_url.rstrip("/")}
        async with detour_serve(seed, tmp_path, env=env) as serving:
            good = load_config_text(seed, source="seed", env=SEED_ENV)
            seen: Counter[str] = Counter()
            for index in range(LIVE_MUTATIONS):
                mutation = mutate(seed, rng, index)
                text = unique(mutation.text, f"mutation {index}")
                expected, loaded = expected_outcome(text, local)
                seen[expected] += 1
                if expected == "elsewhere":
                    continue
                outcome = await serving.reload(text)
                assert outcome == expected, f"seed {SEED} #{index} {mutation.name}"
                if outcome == "applied":
                    assert loaded is not None
                    await assert_in_force(serving, loaded)
                    # Whatever the applied config does to routing (a provider may well refuse a
                    # 100 KB api_key with its own 400), the sidecar answers, and not with its own 500.
                    answer = await ask(serving)
                    assert answer.status_code == 200 or 400 <= answer.status_code < 600, answer.text
                    assert "internal error" not in answer.text, answer.text
                    restored = unique(seed, f"restored after {index}")
                    assert await serving.reload(restored) == "applied"
                    good = load_config_text(str(restored), source="seed", env=SEED_ENV)
                await assert_in_force(serving, good)
                answer = await ask(serving)
                assert answer.status_code == 200, f"seed {SEED} #{index} {mutation.name}: {answer.text}"
                assert answer.headers["x-detour-provider"] == "p0"

            final = unique(seed, "after the batch")
            assert await serving.reload(final) == "applied", "reloading is still alive"
            await assert_in_force(serving, load_config_text(str(final), source="seed", env=SEED_ENV))
            assert (await ask(serving)).status_code == 200
            reload = (await serving.state())["reload"]

    assert seen["rejected"] + seen["unreadable"] > LIVE_MUTATIONS // 2, seen
    assert reload["failed"] == 0, reload
    assert reload["rejected"] == seen["rejected"]
    assert [line for line in serving.log if MARK in line] == []


# --- what the fuzz found (each failed before its fix) ---------------------------------------


async def test_a_billion_laughs_config_is_rejected_at_once() -> None:
    program = (
        "from sidecar.config.loader import load_config_text\n"
        "from sidecar.errors import ConfigError\n"
        f"try: load_config_text({billion_laughs(7)!r}, source='x', env={{}})\n"
        "except ConfigError: print('rejected')\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 3)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the loader was still expanding aliases after 3 s") from None
    assert out.strip() == b"rejected"


async def test_requests_are_served_while_a_slow_config_is_checked(tmp_path: pathlib.Path) -> None:
    async with SimulatedProvider("openai") as p0, SimulatedProvider("openai") as p1:
        async with detour_serve(live_seed(p0, p1), tmp_path, env={**os.environ, **SEED_ENV}) as serving:
            reloading = asyncio.ensure_future(serving.reload(billion_laughs(6), within_s=60))
            latencies = []
            async with httpx.AsyncClient(timeout=30) as client:
                while not reloading.done():
                    began = time.perf_counter()
                    await client.get(serving.url + "/healthz")
                    latencies.append(time.perf_counter() - began)
            outcome = await reloading

    assert outcome == "rejected"
    assert max(latencies) < 0.5, f"/healthz waited {max(latencies):.2f} s"


@pytest.mark.parametrize("value", ["!!binary abc", "!!python/object:os.system x", "!!omap x", "!custom x"])
def test_a_value_its_tag_cannot_build_is_named_by_its_path(value: str) -> None:
    text = minimal_seed().replace(f"api_key: {LITERAL_KEY}", f"api_key: {value}")
    with pytest.raises(ConfigError) as rejected:
        load_config_text(text, source="x", env=SEED_ENV)

    assert [problem.path for problem in rejected.value.problems] == ["providers.openai-primary.api_key"]


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\ud800"], ids=["nul", "escape", "surrogate"])
def test_a_control_character_is_reported_as_invalid_yaml_at_its_position(character: str) -> None:
    text = minimal_seed().replace("type: round-robin", f"type: round{character}robin")
    with pytest.raises(ConfigError) as rejected:
        load_config_text(text, source="x", env=SEED_ENV)

    problem = str(rejected.value)
    assert problem.startswith("invalid YAML"), problem
    assert "position" in problem or "line" in problem, problem


@pytest.mark.parametrize(
    ("written", "where"),
    [
        ("- openai-primary", "routing.rules[0].strategy.providers[0]"),
        ("type: round-robin", "routing.rules[0].strategy.type"),
    ],
)
def test_a_key_pasted_where_a_name_belongs_is_not_quoted(written: str, where: str) -> None:
    pasted = written.replace("openai-primary", LITERAL_KEY).replace("round-robin", LITERAL_KEY)
    text = minimal_seed().replace(f"    {written}", f"    {pasted}", 1)
    assert text != minimal_seed()
    with pytest.raises(ConfigError) as rejected:
        load_config_text(text, source="x", env=SEED_ENV)

    assert [problem.path for problem in rejected.value.problems] == [where]
    assert LITERAL_KEY not in str(rejected.value)
