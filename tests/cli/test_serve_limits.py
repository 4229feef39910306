"""`detour serve`'s limit flags (docs/operations.md): each comes from its flag, else its `DETOUR_*`
variable, else its default, and reaches `ServeSettings`; a value that is not a positive number is a
usage error; and a real process applies them (and the admin port) on its sockets."""

from __future__ import annotations

import asyncio
import pathlib

import httpx
import pytest

from sidecar.app import DEFAULT_SHUTDOWN_GRACE_SECS
from sidecar.cli.main import main
from sidecar.cli.serve import ServeSettings
from sidecar.ingress.asgi import DEFAULT_MAX_BODY_BYTES
from sidecar.ingress.http_protocol import (
    DEFAULT_BODY_TIMEOUT_SECS,
    DEFAULT_HEADER_TIMEOUT_SECS,
    DEFAULT_KEEPALIVE_TIMEOUT_SECS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    ConnectionLimits,
)
from tests.ingress.wire import read_response
from tests.support.processes import detour_process, free_port
from tests.support.running import config_text, limits_alternative_rule, provider

# flag, its default, a value to give and that value as parsed. The variable is DETOUR_<FLAG> and the
# ServeSettings field the flag's name, as for every `detour serve` setting (a connection's limit is
# in `ServeSettings.limits`, a `ConnectionLimits`).
LIMITS = [
    ("--max-header-bytes", DEFAULT_MAX_HEADER_BYTES, "4096", 4096),
    ("--max-body-bytes", DEFAULT_MAX_BODY_BYTES, "1024", 1024),
    ("--header-timeout-secs", DEFAULT_HEADER_TIMEOUT_SECS, "0.3", 0.3),
    ("--body-timeout-secs", DEFAULT_BODY_TIMEOUT_SECS, "2.5", 2.5),
    ("--keepalive-timeout-secs", DEFAULT_KEEPALIVE_TIMEOUT_SECS, "1", 1.0),
    ("--max-connections", DEFAULT_MAX_CONNECTIONS, "64", 64),
    ("--shutdown-grace-secs", DEFAULT_SHUTDOWN_GRACE_SECS, "45", 45.0),
    ("--admin-port", None, "9090", 9090),
]


def env_of(flag: str) -> str:
    return "DETOUR_" + flag[2:].upper().replace("-", "_")


def setting(settings: ServeSettings, flag: str) -> object:
    """The `ServeSettings` field of a flag of the same name; a connection's limit is in its `limits`."""
    name = flag[2:].replace("-", "_")
    return getattr(settings.limits if name in ConnectionLimits.__slots__ else settings, name)


@pytest.fixture(autouse=True)
def no_limits_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag, *_ in LIMITS:
        monkeypatch.delenv(env_of(flag), raising=False)


def settings_of(monkeypatch: pytest.MonkeyPatch, *flags: str) -> ServeSettings:
    """What `detour serve --config r.yaml FLAGS…` hands to `serve_forever` (which is not run)."""
    seen: list[ServeSettings] = []

    async def serve_forever(settings: ServeSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr("sidecar.cli.serve.serve_forever", serve_forever)
    assert main(["serve", "--config", "r.yaml", *flags]) == 0
    return seen[0]


def test_the_defaults() -> None:
    assert (DEFAULT_HEADER_TIMEOUT_SECS, DEFAULT_BODY_TIMEOUT_SECS, DEFAULT_KEEPALIVE_TIMEOUT_SECS) == (
        10,
        30,
        5,
    )
    assert DEFAULT_MAX_CONNECTIONS == 1024
    assert DEFAULT_SHUTDOWN_GRACE_SECS == 20, "below Kubernetes' default terminationGracePeriodSeconds (30)"
    assert DEFAULT_MAX_BODY_BYTES == 32 * 1024 * 1024


@pytest.mark.parametrize(("flag", "default", "given", "parsed"), LIMITS, ids=[flag for flag, *_ in LIMITS])
def test_each_limit_comes_from_its_flag_else_its_environment_else_its_default(
    monkeypatch: pytest.MonkeyPatch, flag: str, default: float | None, given: str, parsed: float
) -> None:
    env = env_of(flag)
    assert setting(settings_of(monkeypatch), flag) == default
    monkeypatch.setenv(env, given)
    assert setting(settings_of(monkeypatch), flag) == parsed
    other = "7" if given != "7" else "8"
    assert setting(settings_of(monkeypatch, flag, other), flag) == type(parsed)(other), "the flag wins"


def test_the_help_states_each_default_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines

    for flag, default, _, _ in LIMITS[:-1]:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert f"(default {shown}; env {env_of(flag)})" in text, flag
    assert "env DETOUR_ADMIN_PORT" in text


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--header-timeout-secs", "0"),
        ("--body-timeout-secs", "-1"),
        ("--keepalive-timeout-secs", "soon"),
        ("--shutdown-grace-secs", "inf"),
        ("--header-timeout-secs", "nan"),
        ("--max-connections", "0"),
        ("--max-connections", "1.5"),
        ("--max-body-bytes", "-5"),
        ("--admin-port", "0"),
        ("--admin-port", "65536"),
        # Beyond the upper bounds: such a value would overflow a C integer (grpc's options) and
        # crash the process instead.
        ("--max-connections", "2147483647"),
        ("--max-connections", "1" + "0" * 400),
        ("--max-body-bytes", str(2**31)),
        ("--header-timeout-secs", "1e300"),
    ],
)
@pytest.mark.parametrize("source", ["flag", "env"])
def test_a_value_that_is_not_positive_or_is_out_of_bounds_is_a_usage_error_naming_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str, value: str, source: str
) -> None:
    if source == "flag":
        args = [flag, value]
    else:
        monkeypatch.setenv(env_of(flag), value)
        args = []

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--config", "r.yaml", *args])

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"{flag}: expected a" in error
    assert repr(value) in error or value in error


# --- a real process ----------------------------------------------------------------------------------


def routes(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(
        config_text({"p": provider("openai", "http://127.0.0.1:9")}, [limits_alternative_rule(["p"])])
    )
    return str(path)


async def test_serve_applies_the_connection_limits_and_the_admin_port_it_is_given(
    tmp_path: pathlib.Path,
) -> None:
    port, admin_port = free_port(), free_port()
    flags = ("--port", str(port), "--max-connections", "1", "--header-timeout-secs", "0.3")
    env = {"DETOUR_ADMIN_PORT": str(admin_port)}
    async with detour_process("serve", "--config", routes(tmp_path), *flags, env=env) as detour:
        await detour.line_containing("detour serving on")
        admin_line = await detour.line_containing("admin endpoints on")
        async with httpx.AsyncClient(timeout=5) as client:
            admin = await client.get(f"http://127.0.0.1:{admin_port}/admin/state")
            on_api = await client.get(f"http://127.0.0.1:{port}/admin/state")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # the one connection allowed
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            held = (await asyncio.wait_for(read_response(reader), 5))[0]
            over_reader, over_writer = await asyncio.open_connection("127.0.0.1", port)
            over = (await asyncio.wait_for(read_response(over_reader), 5))[0]
            over_writer.close()
            async with asyncio.timeout(5):  # idle after its answer: closed (header timeout < keep-alive)
                assert await reader.read() == b""
        finally:
            writer.close()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(5):  # sends nothing: closed at the 0.3 s header timeout
            idle_end = await idle_reader.read()
        idle_writer.close()

    assert f"127.0.0.1:{admin_port}" in admin_line, "on the API's host: loopback"
    assert admin.status_code == 200
    assert on_api.status_code == 404
    assert held == 200
    assert over == 503
    assert idle_end == b""


async def test_serve_exits_1_when_the_admin_port_is_taken(tmp_path: pathlib.Path) -> None:
    port = free_port()
    args = ("serve", "--config", routes(tmp_path), "--port", str(port), "--admin-port", str(port))
    async with detour_process(*args) as detour:
        logged = await detour.line_containing("could not listen")
        code = await asyncio.wait_for(detour.process.wait(), 10)

    assert "in use" in logged
    assert code == 1
