"""`detour.v1.Admin`: the state /admin/state shows, the events as they happen (a 429, the failover,
a config applied or rejected, a limit cleared), a slow watcher that never slows a request, and
`ClearLimit` sending the next request back to the primary."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from sidecar.ingress.grpc._generated import admin_pb2 as pb
from sidecar.ingress.grpc.admin import EventFeed
from sidecar.kube.reload import ConfigReloader
from sidecar.routing.events import LimitCleared
from tests.grpc.support import CALL_TIMEOUT_S, grpc_detour, pair, rpc_error, text_request
from tests.support.memory_transport import Upstreams, openai_at, rate_limit

CONFIG = pair(openai_at("primary"), openai_at("backup"))


async def _watch(detour: Any) -> Any:
    """A WatchEvents call whose watch is in place (its initial metadata has arrived)."""
    call = detour.admin.WatchEvents(pb.WatchEventsRequest(), timeout=CALL_TIMEOUT_S)
    async with asyncio.timeout(CALL_TIMEOUT_S):
        assert dict(await call.initial_metadata())["detour-watching"] == "1"
    return call


async def _read(call: Any, count: int) -> list[Any]:
    async with asyncio.timeout(CALL_TIMEOUT_S):
        return [await call.read() for _ in range(count)]


async def test_get_state_is_admin_state_typed() -> None:
    upstreams = Upstreams(primary=rate_limit("30"))
    async with grpc_detour(CONFIG, upstreams) as detour:
        await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        state = await detour.admin.GetState(pb.GetStateRequest(), timeout=CALL_TIMEOUT_S)
        expected = detour.sidecar.router.describe_state()

    assert state.config.version == expected["config"]["version"]
    assert list(state.config.providers) == ["backup", "primary"]
    [limit] = state.rate_limited
    [described] = expected["rate_limited"]
    assert (limit.provider, limit.model, limit.reason, limit.wait_source) == (
        "primary",
        "gpt-4o",
        "rate_limit",
        "retry-after",
    )
    assert (limit.wait_s, limit.remaining_s) == (30.0, 30.0)
    assert limit.expires_at.seconds == int(described["expires_at"])
    assert state.rate_limited_total == 1
    assert state.rate_limit_table.size == 1
    assert dict(state.counters) == expected["counters"]
    assert not state.HasField("reload"), "no config source reloads this sidecar"


async def test_get_state_before_any_config_and_with_a_reloader() -> None:
    async with grpc_detour(None, Upstreams()) as detour:
        empty = await detour.admin.GetState(pb.GetStateRequest(), timeout=CALL_TIMEOUT_S)
        reloader = ConfigReloader(detour.sidecar.apply, source="file:routes.yaml", env={})
        detour.sidecar.config_source = reloader.status
        await reloader.offer_text(CONFIG, origin="file:routes.yaml")
        loaded = await detour.admin.GetState(pb.GetStateRequest(), timeout=CALL_TIMEOUT_S)

    assert not empty.HasField("config")
    assert len(empty.rate_limited) == 0
    assert loaded.config.version == loaded.reload.version
    assert (loaded.reload.source, loaded.reload.last_result, loaded.reload.applied) == (
        "file:routes.yaml",
        "applied",
        1,
    )
    assert loaded.reload.last_change_at.seconds > 0


async def test_watch_events_sees_the_429_and_the_failover_as_they_happen() -> None:
    upstreams = Upstreams(primary=rate_limit("30"))
    async with grpc_detour(CONFIG, upstreams) as detour:
        call = await _watch(detour)
        await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        limited, failover = await _read(call, 2)
        call.cancel()

    assert limited.WhichOneof("kind") == "rate_limited"
    assert (limited.rate_limited.provider, limited.rate_limited.model) == ("primary", "gpt-4o")
    assert (limited.rate_limited.wait_s, limited.rate_limited.wait_source) == (30.0, "retry-after")
    assert limited.at.seconds == int(detour.clock.wall())
    assert (failover.failover.from_provider, failover.failover.to_provider) == ("primary", "backup")
    assert failover.failover.reason == "rate_limit"


async def test_watch_events_sees_configs_applied_and_rejected() -> None:
    async with grpc_detour(None, Upstreams()) as detour:
        reloader = ConfigReloader(detour.sidecar.apply, source="file:routes.yaml", env={})
        detour.sidecar.config_source = reloader.status
        call = await _watch(detour)
        await reloader.offer_text(CONFIG, origin="file:routes.yaml")
        await reloader.offer_text("providers: {}\nrouting: {rules: []}\n", origin="file:routes.yaml")
        applied, rejected = await _read(call, 2)
        call.cancel()

    assert applied.config_applied.version == reloader.status.version
    assert applied.config_applied.source == "file:routes.yaml"
    assert rejected.config_rejected.result == "rejected"
    assert rejected.config_rejected.active_version == reloader.status.version
    assert any("providers" in problem for problem in rejected.config_rejected.problems)


async def test_clear_limit_sends_the_next_request_back_to_the_primary() -> None:
    upstreams = Upstreams(primary=rate_limit("30"))
    async with grpc_detour(CONFIG, upstreams) as detour:
        await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        upstreams["primary"] = rate_limit("30")
        await detour.gateway.Chat(text_request("gpt-4o-mini"), timeout=CALL_TIMEOUT_S)  # a second model
        call = await _watch(detour)
        one = await detour.admin.ClearLimit(pb.ClearLimitRequest(provider="primary", model="gpt-4o"))
        [cleared] = await _read(call, 1)
        del upstreams.handlers["primary"]  # it answers normally again
        served = await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        still = await detour.gateway.Chat(text_request("gpt-4o-mini"), timeout=CALL_TIMEOUT_S)
        every = await detour.admin.ClearLimit(pb.ClearLimitRequest(provider="primary"))
        unknown = await rpc_error(detour.admin.ClearLimit(pb.ClearLimitRequest(provider="nope")))
        call.cancel()

    assert one.cleared == 1
    assert (cleared.limit_cleared.provider, cleared.limit_cleared.model, cleared.limit_cleared.cleared) == (
        "primary", "gpt-4o", 1,
    )  # fmt: skip
    assert served.served.provider == "primary", "back to the primary at once"
    assert still.served.provider == "backup", "the other model's limit stands"
    assert every.cleared == 1
    assert unknown.code() is grpc.StatusCode.NOT_FOUND


async def test_clear_limit_with_no_model_lifts_a_quota() -> None:
    upstreams = Upstreams(primary=rate_limit(quota=True))
    async with grpc_detour(CONFIG, upstreams) as detour:
        await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        kept = await detour.admin.ClearLimit(pb.ClearLimitRequest(provider="primary", model="gpt-4o"))
        lifted = await detour.admin.ClearLimit(pb.ClearLimitRequest(provider="primary"))
        state = await detour.admin.GetState(pb.GetStateRequest())

    assert (kept.cleared, lifted.cleared) == (0, 1), "a quota limits the provider, not one candidate"
    assert len(state.rate_limited) == 0


async def test_a_watcher_that_does_not_read_never_slows_requests_and_is_told_what_it_missed() -> None:
    upstreams = Upstreams(primary=rate_limit("30"))
    async with grpc_detour(CONFIG, upstreams) as detour:
        detour.server.admin.feed_capacity = 2
        call = await _watch(detour)
        router = detour.sidecar.router
        for _ in range(5):  # five events in one turn of the loop: the feed holds two
            router.clear_limit("primary", "gpt-4o")
        for _ in range(20):  # requests go on while the watcher reads nothing
            await detour.gateway.Chat(text_request(), timeout=CALL_TIMEOUT_S)
        first, second = await _read(call, 2)
        router.clear_limit("backup")
        later = await _read(call, 1)
        call.cancel()

    assert [event.dropped for event in (first, second)] == [0, 0]
    assert later[0].dropped >= 3, "the next event it gets says how many it missed"
    assert detour.server.admin.dropped >= 3


def test_an_event_feed_drops_the_newest_when_full_and_counts() -> None:
    feed = EventFeed(lambda: 7.0, capacity=2)
    for n in range(4):
        feed.on_limit_cleared(LimitCleared("p", None, n))
    assert feed.dropped_total == 2
    assert [item[1].cleared for item in feed._items] == [0, 1]
    feed._items.clear()
    feed.on_limit_cleared(LimitCleared("p", None, 9))
    assert feed._items[0] == (7.0, LimitCleared("p", None, 9), 2)
    feed.close()
    feed.on_limit_cleared(LimitCleared("p", None, 10))
    assert len(feed._items) == 1, "nothing is taken after close"


async def test_closing_the_feed_ends_the_watch() -> None:
    async with grpc_detour(CONFIG, Upstreams()) as detour:
        call = await _watch(detour)
        detour.server.admin.close()
        async with asyncio.timeout(CALL_TIMEOUT_S):
            assert [event async for event in call] == []
        assert await call.code() is grpc.StatusCode.OK


@pytest.mark.parametrize("provider", ["", "primary"])
async def test_clear_limit_without_a_config_is_not_found(provider: str) -> None:
    async with grpc_detour(None, Upstreams()) as detour:
        failed = await rpc_error(detour.admin.ClearLimit(pb.ClearLimitRequest(provider=provider)))
    assert failed.code() is grpc.StatusCode.NOT_FOUND
