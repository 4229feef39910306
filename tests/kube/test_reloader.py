"""A config becomes active only once validated; a bad one is rejected, reported and changes nothing."""

from __future__ import annotations

import os
import pathlib

import httpx

from sidecar.app import Sidecar
from sidecar.kube.files import FileWatcher
from sidecar.kube.reload import ConfigReloader
from sidecar.providers.ratelimit_headers import WaitSource
from sidecar.routing.limits import LimitDecision, LimitKey, LimitReason
from tests.support.running import config_text, limits_alternative_rule, provider, serve_sidecar

GOOD = config_text({"p": provider("openai", "http://127.0.0.1:9/v1")}, [limits_alternative_rule(["p"])])
OTHER = config_text(
    {"p": provider("openai", "http://127.0.0.1:9/v1"), "q": provider("openai", "http://127.0.0.1:9/v1")},
    [limits_alternative_rule(["p"], ["q"])],
)
BAD = config_text({"p": provider("openai", "http://127.0.0.1:9/v1")}, [limits_alternative_rule(["p-typo"])])


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool, str | None]] = []

    async def __call__(self, reason: str, message: str, warning: bool, uid: str | None) -> None:
        self.seen.append((reason, message, warning, uid))


async def test_a_valid_config_is_applied_and_reported_once() -> None:
    sidecar, reports = Sidecar(), Reports()
    reloader = ConfigReloader(sidecar.apply, source="test", env={}, report=reports)

    assert await reloader.offer_text(GOOD, origin="test@1", uid="u1")
    assert await reloader.offer_text(GOOD, origin="test@2", uid="u1"), "the same text again changes nothing"

    table = sidecar.current_table()
    assert table is not None
    assert table.version == reloader.status.version
    assert [(reason, warning) for reason, _, warning, _ in reports.seen] == [("ConfigApplied", False)]
    assert reloader.status.describe()["applied"] == 1
    await sidecar.aclose()


async def test_an_invalid_config_is_rejected_and_the_last_good_one_keeps_serving() -> None:
    sidecar, reports = Sidecar(), Reports()
    reloader = ConfigReloader(sidecar.apply, source="test", env={}, report=reports)
    await reloader.offer_text(GOOD, origin="test@1")
    good_table = sidecar.current_table()

    assert not await reloader.offer_text(BAD, origin="test@2", uid="u2")

    assert sidecar.current_table() is good_table
    reason, message, warning, uid = reports.seen[-1]
    assert (reason, warning, uid) == ("InvalidRoutingConfig", True, "u2")
    assert "unknown provider 'p-typo'" in message
    assert good_table is not None
    assert good_table.version in message, "the message says which version stays active"
    assert reloader.status.last_result == "rejected"
    await sidecar.aclose()


async def test_a_missing_config_keeps_the_last_good_one_and_is_reported_once() -> None:
    sidecar, reports = Sidecar(), Reports()
    reloader = ConfigReloader(sidecar.apply, source="test", env={}, report=reports)
    await reloader.offer_text(GOOD, origin="test@1")

    await reloader.offer_missing("configmap ns/routes: deleted")
    await reloader.offer_missing("configmap ns/routes: deleted")

    assert sidecar.current_table() is not None
    assert [reason for reason, *_ in reports.seen] == ["ConfigApplied", "InvalidRoutingConfig"]
    assert "keeping version" in reports.seen[-1][1]
    await sidecar.aclose()


async def test_a_reload_keeps_state_and_clients_for_providers_that_still_exist() -> None:
    sidecar = Sidecar()
    reloader = ConfigReloader(sidecar.apply, source="test", env={})
    await reloader.offer_text(OTHER, origin="test@1")
    router = sidecar.router
    now = router.clock.monotonic()
    decision = LimitDecision(60, WaitSource.RETRY_AFTER, LimitReason.RATE_LIMIT)
    for provider_id in ("p", "q"):
        router.limits.record(LimitKey(provider_id, "m"), decision, now)
    before = sidecar.current_table()
    assert before is not None

    await reloader.offer_text(GOOD, origin="test@2")

    after = sidecar.current_table()
    assert after is not None
    assert router.limits.blocked_until("p", "m", now) is not None
    assert router.limits.blocked_until("q", "m", now) is None, "state of a removed provider is dropped"
    assert after.clients["p"] is before.clients["p"], "an unchanged provider keeps its pooled client"
    await sidecar.aclose()


async def test_the_file_watcher_follows_a_mounted_configmaps_symlink_swap(tmp_path: pathlib.Path) -> None:
    """The kubelet writes a new directory and re-points `..data`; the file's own path never changes."""
    first, second = tmp_path / "..2026_01", tmp_path / "..2026_02"
    first.mkdir()
    second.mkdir()
    (first / "routes.yaml").write_text(GOOD)
    (second / "routes.yaml").write_text(OTHER)
    os.symlink(first.name, tmp_path / "..data")
    os.symlink("..data/routes.yaml", tmp_path / "routes.yaml")
    changes: list[str] = []

    async def changed(text: str) -> None:
        changes.append(text)

    watcher = FileWatcher(str(tmp_path / "routes.yaml"), changed, interval_s=0.01)
    watcher.prime(GOOD)
    await watcher.check()
    assert changes == []

    os.symlink(second.name, tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # the atomic swap
    await watcher.check()
    await watcher.check()

    assert changes == [OTHER]


async def test_readyz_turns_ready_with_the_first_valid_config() -> None:
    sidecar = Sidecar()
    async with serve_sidecar(sidecar) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        reloader = ConfigReloader(sidecar.apply, source="test", env={})
        await reloader.offer_text(BAD, origin="test@1")
        assert (await client.get("/readyz")).status_code == 503, (
            "an invalid first config does not make it ready"
        )
        await reloader.offer_text(GOOD, origin="test@2")
        assert (await client.get("/readyz")).status_code == 200
