"""`detour serve | inject | simulate | validate | demo`: parse arguments, build a settings object, run.

Nothing here routes; it only wires config sources to a `Sidecar` and runs the event loop (uvloop
where available).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from sidecar.config.loader import load_config_file
from sidecar.errors import ConfigError
from sidecar.sockets import parse_listen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detour", description="LLM-routing sidecar with 429 failover.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the sidecar")
    serve.add_argument(
        "--config", default=os.environ.get("DETOUR_CONFIG"), help="routes.yaml (env DETOUR_CONFIG)"
    )
    serve.add_argument(
        "--configmap",
        default=os.environ.get("DETOUR_CONFIGMAP"),
        metavar="NAMESPACE/NAME",
        help="watch routes in this ConfigMap through the API server (env DETOUR_CONFIGMAP)",
    )
    serve.add_argument(
        "--configmap-key",
        default=os.environ.get("DETOUR_CONFIGMAP_KEY", "routes.yaml"),
        help="the ConfigMap's data key holding the routes (default routes.yaml)",
    )
    serve.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else KUBECONFIG)"
    )
    serve.add_argument(
        "--reload-interval", type=float, default=0.5, help="seconds between checks of --config FILE"
    )
    serve.add_argument("--host", default=None, help="bind address (default: server.host or 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port_or_any, default=None, help="port (default: server.port or 8081; 0: any free one)"
    )
    serve.add_argument(
        "--health-port",
        type=_port,
        default=os.environ.get("DETOUR_HEALTH_PORT") or None,  # a string default goes through `type`
        help="also serve /healthz and /readyz (only) on this port on every interface, for kubelet "
        "probes; the API stays on --host (env DETOUR_HEALTH_PORT)",
    )
    serve.add_argument(
        "--admin-port",
        type=_port,
        default=os.environ.get("DETOUR_ADMIN_PORT"),
        metavar="PORT",
        help="serve /admin/* on this port (same host as the API) and no longer on the API port "
        "(default: on the API port; env DETOUR_ADMIN_PORT)",
    )
    serve.add_argument(
        "--grpc-port",
        type=_port_or_off,
        default=os.environ.get("DETOUR_GRPC_PORT", "8082"),
        metavar="PORT",
        help="serve the gRPC API on this port, on the API's host (default 8082; 0 turns it off; "
        "env DETOUR_GRPC_PORT; docs/grpc.md)",
    )
    serve.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=_switch_from_env("DETOUR_GC_FREEZE", default=True),  # a bad value: reported by `main`
        help="move start-up's objects out of the garbage collector's scans once serving starts "
        "(default on; env DETOUR_GC_FREEZE=0 turns it off; docs/benchmarks.md)",
    )
    serve.add_argument(
        "--switch-interval-ms",
        type=_milliseconds_or_off,
        default=os.environ.get("DETOUR_SWITCH_INTERVAL_MS") or "1",  # a string default goes through `type`
        metavar="MS",
        help="how long a thread (the telemetry exporter's) may hold the interpreter before the event "
        "loop gets it back (default 1; Python's own is 5; env DETOUR_SWITCH_INTERVAL_MS; "
        "docs/benchmarks.md)",
    )
    serve.add_argument(
        "--gc-threshold",
        type=_count_or_off,
        default=os.environ.get("DETOUR_GC_THRESHOLD") or "3000",  # a string default goes through `type`
        metavar="N",
        help="collect the garbage collector's youngest generation after N net allocations instead of "
        "Python's default (700 up to 3.13) (default 3000; 0 keeps Python's; env DETOUR_GC_THRESHOLD; "
        "docs/benchmarks.md)",
    )
    _add_limits(serve)
    serve.add_argument("--log-level", default=os.environ.get("DETOUR_LOG_LEVEL", "info"))
    serve.add_argument(
        "--metrics-port",
        type=_port_or_any,
        default=os.environ.get("DETOUR_METRICS_PORT") or None,
        help="serve Prometheus metrics on this port (no collector needed; env DETOUR_METRICS_PORT)",
    )
    serve.add_argument(
        "--metrics-host",
        default=os.environ.get("DETOUR_METRICS_HOST"),
        help="bind address of the metrics endpoint (default 0.0.0.0, so Prometheus can scrape the pod)",
    )

    inject = commands.add_parser("inject", help="serve the mutating admission webhook that adds the sidecar")
    inject.add_argument(
        "--listen",
        type=parse_listen,
        default="0.0.0.0:8443",
        metavar="HOST:PORT",
        help="default 0.0.0.0:8443",
    )
    inject.add_argument(
        "--tls-cert-file", required=True, help="serving certificate (PEM), reloaded on change"
    )
    inject.add_argument("--tls-key-file", required=True, help="its private key (PEM), reloaded on change")
    inject.add_argument(
        "--sidecar-image",
        default=os.environ.get("DETOUR_SIDECAR_IMAGE"),
        required="DETOUR_SIDECAR_IMAGE" not in os.environ,
        help="image of the injected sidecar (env DETOUR_SIDECAR_IMAGE)",
    )
    inject.add_argument(
        "--config", default=None, help="inject.yaml: what to put in pods (docs/kubernetes.md)"
    )
    inject.add_argument("--cert-reload-interval", type=float, default=1.0, help="seconds between checks")
    inject.add_argument("--log-level", default=os.environ.get("DETOUR_LOG_LEVEL", "info"))

    simulate = commands.add_parser(
        "simulate", help="run one simulated provider (try Detour without API keys; docs/kubernetes.md)"
    )
    simulate.add_argument("--dialect", choices=("openai", "anthropic"), default="openai")
    simulate.add_argument(
        "--listen",
        type=parse_listen,
        default="127.0.0.1:9000",
        metavar="HOST:PORT",
        help="default 127.0.0.1:9000",
    )
    simulate.add_argument("--name", default="sim", help="named in its replies (default sim)")
    simulate.add_argument("--limit", type=int, default=None, help="requests admitted per window; 429 beyond")
    simulate.add_argument("--window", type=float, default=20.0, help="the window, seconds (default 20)")
    simulate.add_argument("--api-key", default=None, help="accept only this key (default: any key)")

    validate = commands.add_parser("validate", help="check a config file and print every problem")
    validate.add_argument("file")

    demo = commands.add_parser("demo", help="watch failover and recovery with simulated providers")
    demo.add_argument("--requests", type=int, default=24, help="how many requests the driver sends")
    demo.add_argument("--plain", action="store_true", help="print lines instead of a live table")
    demo.add_argument("--pace", type=float, default=0.55, help="seconds between requests")
    demo.add_argument("--window", type=float, default=4.0, help="the primary's rate-limit window, seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        return validate(args.file)
    if args.command == "inject":
        _configure_logging(args.log_level)
        from sidecar.cli.inject import run_injector

        return _run(
            lambda: run_injector(
                listen=args.listen,
                cert_file=args.tls_cert_file,
                key_file=args.tls_key_file,
                image=args.sidecar_image,
                config_path=args.config,
                reload_s=args.cert_reload_interval,
            )
        )
    if args.command == "simulate":
        _configure_logging("info")
        from sidecar.cli.simulate import run_simulator

        host, port = args.listen
        return _run(
            lambda: run_simulator(
                dialect=args.dialect,
                host=host,
                port=port,
                name=args.name,
                limit=args.limit,
                window_s=args.window,
                api_key=args.api_key,
            )
        )
    if args.command == "serve":
        _configure_logging(args.log_level)
        if bool(args.config) == bool(args.configmap):
            print(
                "detour serve: give exactly one of --config FILE or --configmap NAMESPACE/NAME",
                file=sys.stderr,
            )
            return 2
        if not isinstance(args.gc_freeze, bool):
            print(
                "detour serve: DETOUR_GC_FREEZE: expected 1 or 0 (true/false, yes/no, on/off), "
                f"got {args.gc_freeze!r}",
                file=sys.stderr,
            )
            return 2
        from sidecar.cli.serve import ServeSettings, serve_forever
        from sidecar.kube.configmap import ConfigMapRef
        from sidecar.telemetry import TelemetrySettings

        try:
            configmap = ConfigMapRef.parse(args.configmap, args.configmap_key) if args.configmap else None
        except ValueError as exc:
            print(f"detour serve: --configmap: {exc}", file=sys.stderr)
            return 2
        settings = ServeSettings(
            config_path=args.config,
            configmap=configmap,
            host=args.host,
            port=args.port,
            reload_interval_s=args.reload_interval,
            kubeconfig=args.kubeconfig,
            health_port=args.health_port,
            telemetry=TelemetrySettings.from_env(
                os.environ, metrics_port=args.metrics_port, metrics_host=args.metrics_host
            ),
            admin_port=args.admin_port,
            grpc_port=args.grpc_port or None,
            gc_freeze=args.gc_freeze,
            switch_interval_s=args.switch_interval_ms / 1000 if args.switch_interval_ms > 0 else None,
            gc_threshold=args.gc_threshold or None,
            **_given_limits(args),
        )
        return _run(lambda: serve_forever(settings))
    from sidecar.cli.demo import run_demo

    _configure_logging("warning")
    return _run(
        lambda: run_demo(requests=args.requests, plain=args.plain, pace_s=args.pace, window_s=args.window)
    )


def validate(path: str) -> int:
    try:
        loaded = load_config_file(path, env=os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}")
        print(f"{path}: {len(exc.problems)} error(s)")
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}")
    config = loaded.config
    print(
        f"{path}: ok — {len(config.providers)} providers, {len(config.routing.rules)} rules, "
        f"version {loaded.version}"
    )
    return 0


def _run(make: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            return runner.run(make())
        except KeyboardInterrupt:
            return 130


NumberT = TypeVar("NumberT", int, float)


def _number_type(
    parse: Callable[[str], NumberT], accepts: Callable[[NumberT], bool], expected: str
) -> Callable[[str], NumberT]:
    """An argparse type: `parse` the text and check it with `accepts`; a string default (from the
    environment) goes through it too, so a bad variable is a usage error, not a traceback."""

    def convert(text: str) -> NumberT:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return convert


def _switch_from_env(name: str, *, default: bool) -> bool | str:
    """An on/off environment variable: True or False, `default` when unset or empty, and the text
    itself when it is neither (for `main` to report: argparse does not check a flag's default)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    return text


# Upper bounds far beyond any sensible setting, so that no value reaches a C integer it overflows
# (grpc's options, timers in milliseconds) as a crash instead of a usage error.
MAX_BYTES = 1 << 30  # a request body (or head) of a GiB
MAX_CONNECTIONS = 1_000_000  # per port; each holds a file descriptor
MAX_SECONDS = 86_400.0  # a day
_byte_count = _number_type(
    int, lambda value: 1 <= value <= MAX_BYTES, "a positive number of bytes, at most 1 GiB"
)
_connection_count = _number_type(
    int, lambda value: 1 <= value <= MAX_CONNECTIONS, "a positive integer, at most 1,000,000"
)
_positive_seconds = _number_type(  # `0.3` works
    float, lambda value: 0 < value <= MAX_SECONDS, "a positive number of seconds, at most a day (86400)"
)
# 0: leave Python's own setting
_milliseconds_or_off = _number_type(
    float, lambda value: math.isfinite(value) and value >= 0, "milliseconds (0: off)"
)
_count_or_off = _number_type(int, lambda value: value >= 0, "a whole number (0: off)")
_port = _number_type(int, lambda value: 1 <= value <= 65535, "a port from 1 to 65535")
_port_or_any = _number_type(int, lambda value: 0 <= value <= 65535, "a port from 0 (any free one) to 65535")


def _port_or_off(text: str) -> int:
    """An argparse type: a TCP port, or 0 for "off"."""
    return 0 if text.strip() == "0" else _port(text)


# The limits that protect the process (docs/operations.md): flag, type, default, what it bounds.
# Each also reads DETOUR_<FLAG> from the environment; the flag wins. The defaults live with the code
# they bound (importing it would load uvicorn for every command): here they are only for --help,
# and tests/cli/test_serve_limits.py checks that the two agree.
_LIMITS: tuple[tuple[str, Callable[[str], float], str, str], ...] = (
    ("--max-header-bytes", _byte_count, "65536", "cap on a request's line plus headers; 431 beyond"),
    ("--max-body-bytes", _byte_count, "33554432", "cap on a request body; 413 beyond"),
    (
        "--header-timeout-secs",
        _positive_seconds,
        "10",
        "seconds from a connection opening (or its previous request ending) until the request's "
        "head is complete; 408 beyond (a silent close if nothing was sent)",
    ),
    (
        "--body-timeout-secs",
        _positive_seconds,
        "30",
        "seconds from a request's head to its whole body; 408 beyond",
    ),
    ("--keepalive-timeout-secs", _positive_seconds, "5", "seconds an idle kept-alive connection is kept"),
    ("--max-connections", _connection_count, "1024", "open connections per port; 503 beyond"),
    (
        "--shutdown-grace-secs",
        _positive_seconds,
        "20",
        "seconds requests and streams in flight get after SIGTERM before they are cut",
    ),
)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    for flag, kind, default, what in _LIMITS:
        env = "DETOUR_" + flag[2:].upper().replace("-", "_")
        parser.add_argument(
            flag,
            type=kind,
            default=os.environ.get(env) or None,  # a string default goes through `type` too
            metavar={"bytes": "BYTES", "secs": "SECONDS"}.get(flag.rsplit("-", 1)[1], "N"),
            help=f"{what} (default {default}; env {env})",
        )


def _given_limits(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given by flag or environment, as `ServeSettings` fields (a connection's in its
    `limits`); the rest keep their defaults."""
    from sidecar.ingress.http_protocol import ConnectionLimits

    names = (flag[2:].replace("-", "_") for flag, *_ in _LIMITS)
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    per_connection = {name: given.pop(name) for name in ConnectionLimits.__slots__ if name in given}
    return {**given, "limits": ConnectionLimits(**per_connection)}


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
