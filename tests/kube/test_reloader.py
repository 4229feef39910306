"""A config becomes active only once validated; a bad one is rejected, reported and changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpx
import pytest

from sidecar.app import Sidecar
from sidecar.config.loader import LoadedConfig
from sidecar.kube import follow
from sidecar.kube.client import core_v1_api
from sidecar.kube.configmap import ConfigMapRef, ConfigMapWatcher
from sidecar.kube.files import FileWatcher
from sidecar.kube.follow import follow_configmap, follow_file
from sidecar.kube.reload import ConfigReloader
from sidecar.providers.ratelimit_headers import WaitSource
from sidecar.routing.limits import LimitDecision, LimitKey, LimitReason
from tests.support.fake_kube import FakeKubeAPI
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


async def test_a_second_edit_in_the_same_clock_tick_with_the_same_size_is_not_missed(
    tmp_path: pathlib.Path,
) -> None:
    """File times tick at the kernel's granularity: two quick edits of one size can share path,
    inode, size and mtime, and only their content tells them apart."""
    path = tmp_path / "routes.yaml"
    path.write_text("a: 1\n")
    changes: list[str] = []

    async def changed(text: str) -> None:
        changes.append(text)

    watcher = FileWatcher(str(path), changed, interval_s=0.01)
    watcher.prime("a: 1\n")
    path.write_text("b: 2\n")
    await watcher.check()
    stamp = path.stat().st_mtime_ns
    with path.open("r+") as handle:  # in place: same inode, same size
        handle.write("c: 3\n")
    os.utime(path, ns=(stamp, stamp))  # and the same tick
    await watcher.check()
    await watcher.check()

    assert changes == ["b: 2\n", "c: 3\n"]


async def test_an_unreadable_file_is_reported_once_while_it_stays_the_same(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    watcher = FileWatcher(str(path), lambda text: asyncio.sleep(0), interval_s=0.01)
    watcher.prime(GOOD)
    path.write_bytes(b"\xff\xfe not utf-8")
    with caplog.at_level(logging.WARNING, "detour.config"):
        for _ in range(3):
            await watcher.check()
    assert caplog.text.count("could not be read") == 1


async def test_a_file_replaced_between_look_and_read_is_judged_by_what_was_read(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stat that says "changed" and the read that follows are not atomic: when a newer file
    lands in between, the watcher must remember the file it read, or the next look sees "changed"
    again and reports the same unreadable content twice."""
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    watcher = FileWatcher(str(path), lambda text: asyncio.sleep(0), interval_s=0.01)
    watcher.prime(GOOD)
    path.write_text(OTHER)
    real_stat = os.stat

    def stat_then_replace(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(target, *args, **kwargs)
        if os.fspath(target) == os.path.realpath(path):
            monkeypatch.setattr(os, "stat", real_stat)  # once: the writer's next file lands now
            (tmp_path / "next.yaml").write_bytes(b"\xff\xfe not utf-8")
            os.replace(tmp_path / "next.yaml", path)
        return result

    monkeypatch.setattr(os, "stat", stat_then_replace)
    with caplog.at_level(logging.WARNING, "detour.config"):
        for _ in range(3):
            await watcher.check()
    assert caplog.text.count("could not be read") == 1


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


# --- an unexpected failure never ends a reload source ---------------------------------------------

SECRET = "sk-secret-in-an-exception-message"


class FailingFirst:
    """`Sidecar.apply` that raises an unexpected exception (quoting a secret) the first `times` calls."""

    def __init__(self, sidecar: Sidecar, times: int = 1) -> None:
        self.sidecar = sidecar
        self.left = times

    def __call__(self, loaded: LoadedConfig) -> object:
        if self.left:
            self.left -= 1
            raise RuntimeError(f"a bug that quotes {SECRET}")
        return self.sidecar.apply(loaded)


@contextlib.asynccontextmanager
async def background(coroutine: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)  # it starts (a file source primes itself) before the test changes anything
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_reloader_whose_apply_raises_counts_it_logs_only_its_type_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sidecar, reports = Sidecar(), Reports()
    reloader = ConfigReloader(FailingFirst(sidecar), source="test", env={}, report=reports)

    with caplog.at_level(logging.ERROR, logger="detour.config"):
        assert not await reloader.offer_text(GOOD, origin="test@1", uid="u1")

    status = reloader.status.describe()
    assert (status["failed"], status["last_failure"], status["last_result"]) == (1, "RuntimeError", "failed")
    assert (status["applied"], status["rejected"], status["version"]) == (0, 0, None)
    assert "unexpected RuntimeError while reloading config from test@1" in status["last_problems"][0]
    assert sidecar.current_table() is None
    assert "unexpected RuntimeError" in caplog.text
    assert SECRET not in caplog.text
    assert reports.seen[-1][0] == "ReloadFailed"
    assert SECRET not in reports.seen[-1][1]

    assert await reloader.offer_text(GOOD, origin="test@2"), "the same config offered again now applies"
    assert await reloader.offer_text(OTHER, origin="test@3")
    assert (reloader.status.applied, reloader.status.failed) == (2, 1)
    assert reloader.status.last_result == "applied"
    await sidecar.aclose()


async def test_a_reporter_that_raises_is_counted_and_the_config_still_applies() -> None:
    async def broken_report(reason: str, message: str, warning: bool, uid: str | None) -> None:
        raise ConnectionError(SECRET)

    sidecar = Sidecar()
    reloader = ConfigReloader(sidecar.apply, source="test", env={}, report=broken_report)

    assert await reloader.offer_text(GOOD, origin="test@1")
    assert not await reloader.offer_text(BAD, origin="test@2")
    await reloader.offer_missing("configmap ns/routes: deleted")

    assert sidecar.current_table() is not None
    assert (reloader.status.applied, reloader.status.rejected, reloader.status.failed) == (1, 2, 3)
    assert reloader.status.last_result == "missing", "a failed report does not change the outcome"
    assert reloader.status.last_failure == "ConnectionError"
    await sidecar.aclose()


async def test_the_file_source_goes_on_after_an_unexpected_failure(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    sidecar = Sidecar()
    reloader = ConfigReloader(FailingFirst(sidecar), source="test", env={})

    async with background(follow_file(str(path), reloader, initial_text=GOOD, interval_s=0.01)) as task:
        path.write_text(OTHER)
        await reloader.wait_for(lambda status: status.failed == 1)
        path.write_text(GOOD)
        await reloader.wait_for(lambda status: status.applied == 1)
        assert not task.done()

    table = sidecar.current_table()
    assert table is not None
    assert table.version == reloader.status.version
    assert list(table.providers) == ["p"]
    await sidecar.aclose()


async def test_the_file_watcher_hands_a_failed_check_to_on_error_and_checks_on(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    changes: list[str] = []
    errors: list[Exception] = []
    seen_error, seen_two = asyncio.Event(), asyncio.Event()

    async def changed(text: str) -> None:
        changes.append(text)
        if len(changes) == 1:
            raise KeyError(SECRET)
        seen_two.set()

    async def failed(exc: Exception) -> None:
        errors.append(exc)
        seen_error.set()

    watcher = FileWatcher(str(path), changed, interval_s=0.01, on_error=failed)
    watcher.prime(GOOD)
    async with background(watcher.run()):
        path.write_text(OTHER)
        await asyncio.wait_for(seen_error.wait(), 5)
        path.write_text(BAD)
        await asyncio.wait_for(seen_two.wait(), 5)

    assert changes == [OTHER, BAD]
    assert [type(error) for error in errors] == [KeyError]


async def test_the_configmap_source_goes_on_after_an_unexpected_failure(tmp_path: pathlib.Path) -> None:
    ref = ConfigMapRef("apps", "routes")
    async with FakeKubeAPI() as api:
        api.apply_configmap("apps", "routes", {"routes.yaml": GOOD})
        core_api = core_v1_api(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))
        sidecar = Sidecar()
        reloader = ConfigReloader(FailingFirst(sidecar), source=f"configmap:{ref}", env={})
        async with background(follow_configmap(ref, reloader, core_api, watch_timeout_s=2)) as task:
            await reloader.wait_for(lambda status: status.failed == 1)
            api.apply_configmap("apps", "routes", {"routes.yaml": OTHER})
            await reloader.wait_for(lambda status: status.applied == 1)
            assert not task.done()

    table = sidecar.current_table()
    assert table is not None
    assert list(table.providers) == ["p", "q"]
    await sidecar.aclose()


async def test_a_configmap_watcher_thread_that_dies_is_counted_and_started_over(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DiesOnce(ConfigMapWatcher):
        died = False

        def run(self) -> None:
            if not DiesOnce.died:
                DiesOnce.died = True
                raise ValueError(SECRET)
            super().run()

    monkeypatch.setattr(follow, "ConfigMapWatcher", DiesOnce)
    ref = ConfigMapRef("apps", "routes")
    async with FakeKubeAPI() as api:
        api.apply_configmap("apps", "routes", {"routes.yaml": GOOD})
        core_api = core_v1_api(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))
        sidecar = Sidecar()
        reloader = ConfigReloader(sidecar.apply, source=f"configmap:{ref}", env={})
        follower = follow_configmap(ref, reloader, core_api, watch_timeout_s=2, restart_s=0.01)
        async with background(follower):
            await reloader.wait_for(lambda status: status.applied == 1)

    assert (reloader.status.failed, reloader.status.last_failure) == (1, "ValueError")
    assert sidecar.current_table() is not None
    await sidecar.aclose()
