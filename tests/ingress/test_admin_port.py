"""`--admin-port` moves `/admin/*` off the API port onto a port of its own (docs/operations.md, "What
is safe to expose"); without it, `/admin/state` stays on the API port as before."""

from __future__ import annotations

import httpx

from sidecar.app import Sidecar
from sidecar.config.loader import load_config_text
from tests.support.running import config_text, limits_alternative_rule, provider, serve_sidecar

ROUTES = config_text({"p": provider("openai", "http://127.0.0.1:9")}, [limits_alternative_rule(["p"])])


def sidecar() -> Sidecar:
    return Sidecar(load_config_text(ROUTES, source="test", env={}))


async def test_with_an_admin_port_admin_is_served_there_only_and_the_api_port_answers_404() -> None:
    async with serve_sidecar(sidecar(), admin_port=0) as url:
        assert url.admin_url is not None
        assert url.admin_url != url
        async with httpx.AsyncClient(timeout=5) as client:
            admin_state = await client.get(f"{url.admin_url}/admin/state")
            on_api = await client.get(f"{url}/admin/state")
            api_healthz = await client.get(f"{url}/healthz")
            admin_healthz = await client.get(f"{url.admin_url}/healthz")
            admin_chat = await client.post(f"{url.admin_url}/v1/chat/completions", json={})

    assert admin_state.status_code == 200
    assert admin_state.json()["config"]["version"], "the sidecar's state, from the admin port"
    assert on_api.status_code == 404
    assert on_api.json()["error"]["message"] == "unknown path /admin/state"
    assert api_healthz.status_code == 200, "the API port serves everything else"
    assert admin_healthz.status_code == 404, "the admin port serves /admin/* and nothing else"
    assert admin_chat.status_code == 404


async def test_without_an_admin_port_admin_state_is_on_the_api_port() -> None:
    async with serve_sidecar(sidecar()) as url:
        assert url.admin_url is None
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            state = await client.get("/admin/state")

    assert state.status_code == 200
    assert "reload" in state.json()
