"""The fake API server speaks the protocol the official `kubernetes` client expects.

The sync client runs in a thread (`asyncio.to_thread`), as a watcher built on it would; a few tests
use `kubernetes.aio` and raw HTTP to pin what arrives on the wire. Where the client's own behaviour
matters to Detour's watcher (how a 410 surfaces, what a dropped connection raises), the test says so.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest
import urllib3
from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config
from kubernetes.aio import watch as aio_watch

from tests.support.fake_kube import FakeKubeAPI

NS, NAME = "default", "routes"
BY_NAME = f"metadata.name={NAME}"


@pytest.fixture
async def api() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        server.bookmark_interval_s = 0.05
        yield server


@pytest.fixture
def v1(api: FakeKubeAPI, tmp_path: Path) -> Iterator[kubernetes.client.CoreV1Api]:
    api_client = kubernetes.config.new_client_from_config(config_file=api.kubeconfig(tmp_path / "kubeconfig"))
    yield kubernetes.client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture
async def aio_v1(api: FakeKubeAPI, tmp_path: Path) -> AsyncIterator[aio_client.CoreV1Api]:
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    async with await aio_config.new_client_from_config(config_file=kubeconfig) as api_client:
        yield aio_client.CoreV1Api(api_client)


def watch_events(
    v1: kubernetes.client.CoreV1Api, count: int | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Run the official `Watch.stream` on the ConfigMaps of NS; stop after `count` events."""
    watch = kubernetes.watch.Watch()
    seen: list[dict[str, Any]] = []
    for event in watch.stream(v1.list_namespaced_config_map, NS, **kwargs):
        seen.append({"type": event["type"], **event["raw_object"]})
        if count is not None and len(seen) == count:
            watch.stop()
    return seen


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(e["type"], e["metadata"].get("name"), e["metadata"]["resourceVersion"]) for e in events]


async def in_thread_watch(api: FakeKubeAPI, v1: Any, count: int | None = None, **kwargs: Any) -> Any:
    """Start a watch in a thread and return its task once the server holds the connection."""
    task = asyncio.create_task(asyncio.to_thread(watch_events, v1, count, **kwargs))
    await api.wait_for_watchers()
    return task


# --- list and read --------------------------------------------------------------------------


async def test_list_honours_the_field_selector_and_carries_the_current_resource_version(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    api.apply_configmap(NS, NAME, {"routes.yaml": "a: 1"})
    api.apply_configmap(NS, "other", {"x": "y"})
    api.apply_configmap("elsewhere", NAME, {"routes.yaml": "b: 2"})

    listed = await asyncio.to_thread(v1.list_namespaced_config_map, NS, field_selector=BY_NAME)

    assert [(cm.metadata.namespace, cm.metadata.name) for cm in listed.items] == [(NS, NAME)]
    assert listed.items[0].data == {"routes.yaml": "a: 1"}
    assert listed.metadata.resource_version == api.resource_version
    assert api.requests[-1] == ("GET", f"/api/v1/namespaces/{NS}/configmaps?fieldSelector={BY_NAME}")


async def test_read_returns_the_object_with_its_metadata(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    applied = api.apply_configmap(NS, NAME, {"routes.yaml": "a: 1"})

    read = await asyncio.to_thread(v1.read_namespaced_config_map, NAME, NS)

    assert read.metadata.uid == applied["metadata"]["uid"]
    assert read.metadata.resource_version == applied["metadata"]["resourceVersion"]
    assert read.metadata.creation_timestamp is not None
    assert read.data == {"routes.yaml": "a: 1"}


async def test_reading_a_missing_configmap_raises_not_found_with_a_status_body(
    v1: kubernetes.client.CoreV1Api,
) -> None:
    with pytest.raises(kubernetes.client.exceptions.NotFoundException) as caught:
        await asyncio.to_thread(v1.read_namespaced_config_map, "missing", NS)

    status = json.loads(caught.value.body)
    assert (caught.value.status, status["kind"], status["reason"]) == (404, "Status", "NotFound")
    assert status["message"] == 'configmaps "missing" not found'


async def test_an_update_keeps_the_uid_and_a_recreation_gets_a_new_one(api: FakeKubeAPI) -> None:
    first = api.apply_configmap(NS, NAME, {"k": "1"})
    second = api.apply_configmap(NS, NAME, {"k": "2"})
    api.delete_configmap(NS, NAME)
    third = api.apply_configmap(NS, NAME, {"k": "3"})

    assert first["metadata"]["uid"] == second["metadata"]["uid"] != third["metadata"]["uid"]
    assert int(first["metadata"]["resourceVersion"]) < int(second["metadata"]["resourceVersion"])


# --- watch ----------------------------------------------------------------------------------


async def test_watch_sees_added_modified_and_deleted_for_the_selected_name_only(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    listed = await asyncio.to_thread(v1.list_namespaced_config_map, NS, field_selector=BY_NAME)
    watching = await in_thread_watch(
        api,
        v1,
        3,
        field_selector=BY_NAME,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    )

    api.apply_configmap(NS, "other", {"x": "y"})
    added = api.apply_configmap(NS, NAME, {"routes.yaml": "a: 1"})
    modified = api.apply_configmap(NS, NAME, {"routes.yaml": "a: 2"})
    api.delete_configmap(NS, NAME)
    events = await watching

    assert [(e["type"], e["metadata"]["name"]) for e in events] == [
        ("ADDED", NAME), ("MODIFIED", NAME), ("DELETED", NAME),
    ]  # fmt: skip
    assert events[0]["metadata"]["resourceVersion"] == added["metadata"]["resourceVersion"]
    assert events[1]["data"] == modified["data"]
    assert int(events[2]["metadata"]["resourceVersion"]) > int(modified["metadata"]["resourceVersion"])
    assert api.requests[-1][1] == (
        f"/api/v1/namespaces/{NS}/configmaps?fieldSelector={BY_NAME}"
        f"&resourceVersion={listed.metadata.resource_version}&timeoutSeconds=5&watch=true"
    )


async def test_watch_from_a_resource_version_replays_the_changes_after_it(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    start = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["resourceVersion"]
    api.apply_configmap(NS, NAME, {"k": "2"})
    api.apply_configmap(NS, NAME, {"k": "3"})

    events = await asyncio.to_thread(watch_events, v1, 2, resource_version=start, timeout_seconds=5)

    assert [(e["type"], e["data"]) for e in events] == [("MODIFIED", {"k": "2"}), ("MODIFIED", {"k": "3"})]


async def test_watch_without_a_resource_version_starts_with_the_current_state_as_added(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    api.apply_configmap(NS, NAME, {"k": "1"})
    api.apply_configmap(NS, NAME, {"k": "2"})

    events = await asyncio.to_thread(watch_events, v1, 1, field_selector=BY_NAME, timeout_seconds=5)

    assert [(e["type"], e["data"]) for e in events] == [("ADDED", {"k": "2"})]


async def test_watch_from_before_a_compaction_raises_410_expired_with_a_server_timeout(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    old = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["resourceVersion"]
    api.apply_configmap(NS, NAME, {"k": "2"})
    api.compact()

    with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
        await asyncio.to_thread(watch_events, v1, resource_version=old, timeout_seconds=5)

    assert caught.value.status == 410
    assert caught.value.reason.startswith("Expired: too old resource version")
    assert len([r for r in api.requests if "watch=true" in r[1]]) == 1  # timeout_seconds: no retry


async def test_watch_without_a_server_timeout_retries_410_once_then_raises(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    old = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["resourceVersion"]
    api.apply_configmap(NS, NAME, {"k": "2"})
    api.compact()

    with pytest.raises(kubernetes.client.exceptions.ApiException, match="Expired") as caught:
        await asyncio.to_thread(watch_events, v1, resource_version=old)

    assert caught.value.status == 410
    watches = [path for _, path in api.requests if "watch=true" in path]
    assert watches == [f"/api/v1/namespaces/{NS}/configmaps?resourceVersion={old}&watch=true"] * 2


async def test_watch_from_the_version_listed_after_a_compaction_works(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    api.apply_configmap(NS, NAME, {"k": "1"})
    api.compact()
    listed = await asyncio.to_thread(v1.list_namespaced_config_map, NS)
    watching = await in_thread_watch(
        api, v1, 1, resource_version=listed.metadata.resource_version, timeout_seconds=5
    )

    api.apply_configmap(NS, NAME, {"k": "2"})

    assert [(e["type"], e["data"]) for e in await watching] == [("MODIFIED", {"k": "2"})]


async def test_bookmarks_carry_the_current_version_when_allowed(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    api.apply_configmap(NS, NAME, {"k": "1"})
    api.apply_configmap(NS, "other", {"k": "1"})  # outside the selector, yet it moves the version

    events = await asyncio.to_thread(
        watch_events, v1, 2, field_selector=BY_NAME, allow_watch_bookmarks=True, timeout_seconds=5
    )

    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["metadata"]["resourceVersion"] == api.resource_version
    assert events[1]["kind"] == "ConfigMap"


async def test_no_bookmarks_arrive_unless_allowed(api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api) -> None:
    watching = await in_thread_watch(api, v1, 1, timeout_seconds=5)
    await asyncio.sleep(5 * api.bookmark_interval_s)

    api.apply_configmap(NS, NAME, {"k": "1"})

    assert [e["type"] for e in await watching] == ["ADDED"]


async def test_timeout_seconds_ends_the_stream_cleanly(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    events = await asyncio.to_thread(
        watch_events, v1, resource_version=api.resource_version, timeout_seconds=1
    )

    assert events == []
    assert 0.9 < loop.time() - started < 3


async def test_drop_watches_cuts_the_stream_with_a_urllib3_protocol_error(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    watching = await in_thread_watch(api, v1)  # no timeoutSeconds: the stream would last forever

    api.drop_watches()

    with pytest.raises(urllib3.exceptions.ProtocolError, match="Response ended prematurely"):
        await watching  # not an ApiException: the watcher must catch transport errors itself


async def test_changes_made_from_another_thread_reach_the_watch_in_order(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    watching = await in_thread_watch(api, v1, 2, resource_version=api.resource_version, timeout_seconds=5)

    def change() -> None:
        assert threading.current_thread() is not threading.main_thread()
        api.apply_configmap(NS, NAME, {"k": "1"})
        api.delete_configmap(NS, NAME)

    await asyncio.to_thread(change)

    assert [e["type"] for e in await watching] == ["ADDED", "DELETED"]


# --- the wire, without the client ---------------------------------------------------------


async def test_a_watch_is_newline_delimited_json_in_a_chunked_200_response(api: FakeKubeAPI) -> None:
    api.apply_configmap(NS, NAME, {"k": "1"})
    url = f"{api.url}/api/v1/namespaces/{NS}/configmaps"
    query = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "1"}

    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
        async with http.get(url, params=query) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert response.headers["Transfer-Encoding"] == "chunked"
            first, second = await response.content.readline(), await response.content.readline()

    assert json.loads(first)["type"] == "ADDED"
    assert first.endswith(b"}\n")
    assert json.loads(second) == {"type": "BOOKMARK", "object": {
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"resourceVersion": api.resource_version, "creationTimestamp": None},
    }}  # fmt: skip


async def test_an_expired_watch_is_a_single_error_event_in_a_200_response(api: FakeKubeAPI) -> None:
    old = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["resourceVersion"]
    api.apply_configmap(NS, NAME, {"k": "2"})
    api.compact()
    url = f"{api.url}/api/v1/namespaces/{NS}/configmaps"

    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
        async with http.get(url, params={"watch": "true", "resourceVersion": old}) as response:
            assert response.status == 200
            lines = (await response.read()).splitlines()

    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert {k: event["object"][k] for k in ("kind", "status", "reason", "code")} == {
        "kind": "Status", "status": "Failure", "reason": "Expired", "code": 410,
    }  # fmt: skip


async def test_a_list_at_an_old_version_is_410_only_for_an_exact_match(api: FakeKubeAPI) -> None:
    old = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["resourceVersion"]
    api.apply_configmap(NS, NAME, {"k": "2"})
    api.compact()
    url = f"{api.url}/api/v1/namespaces/{NS}/configmaps"

    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
        async with http.get(url, params={"resourceVersion": old}) as not_older_than:
            assert not_older_than.status == 200
            assert (await not_older_than.json())["items"][0]["data"] == {"k": "2"}
        async with http.get(url, params={"resourceVersion": old, "resourceVersionMatch": "Exact"}) as exact:
            assert exact.status == 410
            assert (await exact.json())["reason"] == "Expired"


@pytest.mark.parametrize(
    ("method", "path", "code", "reason"),
    [
        ("GET", "/api/v1/namespaces/default/secrets", 404, "NotFound"),
        ("DELETE", "/api/v1/namespaces/default/configmaps/routes", 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=data.x=y", 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=abc", 400, "BadRequest"),
    ],
)
async def test_what_the_fake_does_not_serve_is_a_status_error(
    api: FakeKubeAPI, method: str, path: str, code: int, reason: str
) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
        async with http.request(method, api.url + path) as response:
            body = await response.json()

    assert (response.status, body["kind"], body["code"], body["reason"]) == (code, "Status", code, reason)


async def test_a_request_without_a_bearer_token_is_unauthorized(api: FakeKubeAPI) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api.url}/api/v1/namespaces/{NS}/configmaps") as response:
            assert response.status == 401


# --- events ---------------------------------------------------------------------------------


def core_event(reason: str, uid: str) -> kubernetes.client.CoreV1Event:
    return kubernetes.client.CoreV1Event(
        metadata=kubernetes.client.V1ObjectMeta(generate_name=f"{NAME}."),
        involved_object=kubernetes.client.V1ObjectReference(
            api_version="v1", kind="ConfigMap", name=NAME, namespace=NS, uid=uid
        ),
        reason=reason, message="applied version 3", type="Normal", count=1,
    )  # fmt: skip


async def test_a_created_event_is_recorded_and_awaitable_by_reason(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    uid = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["uid"]

    created = await asyncio.to_thread(v1.create_namespaced_event, NS, core_event("ConfigApplied", uid))
    event = await api.wait_for_event("ConfigApplied")

    assert created.metadata.name.startswith(f"{NAME}.")
    assert created.metadata.uid
    assert event["metadata"]["name"] == created.metadata.name
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "ConfigMap", "name": NAME, "namespace": NS,
                                       "uid": uid}  # fmt: skip
    assert (event["type"], event["message"]) == ("Normal", "applied version 3")
    assert api.requests[-1] == ("POST", f"/api/v1/namespaces/{NS}/events")
    with pytest.raises(AssertionError, match="ConfigApplied"):
        await api.wait_for_event("ConfigApplied", timeout=0.05)  # each event is returned once


async def test_wait_for_event_wakes_when_the_event_arrives(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    waiting = asyncio.create_task(api.wait_for_event("InvalidRoutingConfig"))
    await asyncio.sleep(0)

    await asyncio.to_thread(v1.create_namespaced_event, NS, core_event("InvalidRoutingConfig", "u"))

    assert (await waiting)["reason"] == "InvalidRoutingConfig"


async def test_patching_an_event_updates_the_recorded_one(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    created = await asyncio.to_thread(v1.create_namespaced_event, NS, core_event("ConfigApplied", "u"))

    patched = await asyncio.to_thread(v1.patch_namespaced_event, created.metadata.name, NS, {"count": 2})

    assert patched.count == 2
    assert len(api.events) == 1
    assert api.events[0]["count"] == 2
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)


async def test_events_k8s_io_v1_events_are_recorded_too(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    events_v1 = kubernetes.client.EventsV1Api(v1.api_client)
    body = kubernetes.client.EventsV1Event(
        metadata=kubernetes.client.V1ObjectMeta(generate_name=f"{NAME}."),
        regarding=kubernetes.client.V1ObjectReference(kind="ConfigMap", name=NAME, namespace=NS, uid="u"),
        reason="ConfigApplied", note="applied", type="Normal", action="Apply",
        event_time=datetime.now(UTC), reporting_controller="detour", reporting_instance="pod-1",
    )  # fmt: skip

    await asyncio.to_thread(events_v1.create_namespaced_event, NS, body)
    event = await api.wait_for_event("ConfigApplied")

    assert (event["apiVersion"], event["regarding"]["name"]) == ("events.k8s.io/v1", NAME)
    assert api.requests[-1] == ("POST", f"/apis/events.k8s.io/v1/namespaces/{NS}/events")


async def test_creating_an_event_twice_with_one_name_is_a_conflict(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    event = core_event("ConfigApplied", "u")
    event.metadata = kubernetes.client.V1ObjectMeta(name="fixed")
    await asyncio.to_thread(v1.create_namespaced_event, NS, event)

    with pytest.raises(kubernetes.client.exceptions.ApiException) as caught:
        await asyncio.to_thread(v1.create_namespaced_event, NS, event)

    assert caught.value.status == 409


# --- lifecycle ------------------------------------------------------------------------------


async def test_a_restart_keeps_the_port_and_the_state(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    before = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["resourceVersion"]
    watching = await in_thread_watch(api, v1, resource_version=before, timeout_seconds=30)
    port = api.port

    await api.stop()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        await watching
    api.apply_configmap(NS, NAME, {"k": "2"})  # changed while the API server was down
    await api.start()
    events = await asyncio.to_thread(watch_events, v1, 1, resource_version=before, timeout_seconds=5)

    assert api.port == port
    assert [(e["type"], e["data"]) for e in events] == [("MODIFIED", {"k": "2"})]


async def test_reset_forgets_objects_events_and_history(
    api: FakeKubeAPI, v1: kubernetes.client.CoreV1Api
) -> None:
    api.apply_configmap(NS, NAME, {"k": "1"})
    await asyncio.to_thread(v1.create_namespaced_event, NS, core_event("ConfigApplied", "u"))

    api.reset()
    listed = await asyncio.to_thread(v1.list_namespaced_config_map, NS)

    assert (listed.items, api.events) == ([], [])


async def test_wait_for_watchers_fails_clearly_when_nobody_watches(api: FakeKubeAPI) -> None:
    with pytest.raises(AssertionError, match="1 open watch"):
        await api.wait_for_watchers(timeout=0.05)


# --- kubernetes.aio, the official client's asyncio flavour ---------------------------------


async def test_the_aio_client_lists_and_watches(api: FakeKubeAPI, aio_v1: aio_client.CoreV1Api) -> None:
    listed = await aio_v1.list_namespaced_config_map(NS, field_selector=BY_NAME)
    seen: list[str] = []

    async def watch() -> None:
        async with aio_watch.Watch() as stream:
            async for event in stream.stream(
                aio_v1.list_namespaced_config_map, NS, field_selector=BY_NAME,
                resource_version=listed.metadata.resource_version, timeout_seconds=5,
            ):  # fmt: skip
                seen.append(event["type"])
                if len(seen) == 2:
                    stream.stop()

    watching = asyncio.create_task(watch())
    await api.wait_for_watchers()
    api.apply_configmap(NS, NAME, {"k": "1"})
    api.apply_configmap(NS, NAME, {"k": "2"})
    await watching

    assert seen == ["ADDED", "MODIFIED"]


async def test_the_aio_client_raises_its_own_api_exception_on_410(
    api: FakeKubeAPI, aio_v1: aio_client.CoreV1Api
) -> None:
    old = api.apply_configmap(NS, NAME, {"k": "1"})["metadata"]["resourceVersion"]
    api.apply_configmap(NS, NAME, {"k": "2"})
    api.compact()

    with pytest.raises(aio_client.exceptions.ApiException) as caught:
        async with aio_watch.Watch() as stream:
            async for _ in stream.stream(
                aio_v1.list_namespaced_config_map, NS, resource_version=old, timeout_seconds=5
            ):
                pass

    assert caught.value.status == 410
    assert not isinstance(caught.value, kubernetes.client.exceptions.ApiException)


async def test_the_aio_client_sees_a_dropped_watch_as_a_payload_error(
    api: FakeKubeAPI, aio_v1: aio_client.CoreV1Api
) -> None:
    async def watch() -> None:
        async with aio_watch.Watch() as stream:
            async for _ in stream.stream(aio_v1.list_namespaced_config_map, NS, timeout_seconds=30):
                pass

    watching = asyncio.create_task(watch())
    await api.wait_for_watchers()
    api.drop_watches()

    with pytest.raises(aiohttp.ClientPayloadError):
        await watching
