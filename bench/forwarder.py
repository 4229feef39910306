"""The floor: a minimal ASGI forwarder with no routing at all, on the same server stack as Detour
(uvicorn + httptools + uvloop), so the benchmark can split Detour's cost into "the stack" and
"Detour's own work". `python -m bench.forwarder CLIENT serve --config FILE --port N --grpc-port 0`,
where CLIENT is `aiohttp` or `httpx-aiohttp`; it forwards every POST to the upstream of the config's
first provider, body and status unchanged, streaming chunk by chunk. It serves no gRPC. Benchmark
use only. CLIENT `httpx-aiohttp` goes through `AsyncClient.send`; `httpx-transport` through Detour's
own upstream seam (`sidecar.providers.http.HttpxTransport`: httpx's transport interface over
httpx-aiohttp), so it is the floor of the stack Detour is built on, routing aside.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import uvicorn
import yaml
from httpx_aiohttp import AiohttpTransport

from sidecar.providers.http import HttpxTransport, Timeouts, UpstreamRequest

Message = dict[str, Any]
_NO_TIMEOUTS = Timeouts(connect_s=10.0, read_s=None)
_READY = (b'{"status":"ready"}', [(b"content-type", b"application/json"), (b"content-length", b"18")])


class Upstream:
    """`post(url, body, headers)` → (status, content type, async chunk iterator, release)."""

    def __init__(self, client: str) -> None:
        self.client = client
        self._session: aiohttp.ClientSession | None = None
        self._httpx: httpx.AsyncClient | None = None
        self._seam: HttpxTransport | None = None

    async def post(
        self, url: str, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, str, AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        if self.client == "aiohttp":
            if self._session is None:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=256), auto_decompress=False
                )
            response = await self._session.post(url, data=body, headers=headers)

            async def release() -> None:
                response.release()

            content_type = response.headers.get("content-type", "application/json")
            return response.status, content_type, response.content.iter_any(), release
        if self.client == "httpx-transport":
            if self._seam is None:
                self._seam = HttpxTransport()
            answer = await self._seam.send(UpstreamRequest(url, headers, body), _NO_TIMEOUTS)
            content_type = answer.headers.get("content-type", "application/json")
            return answer.status, content_type, answer.iter_bytes(), answer.close
        if self._httpx is None:
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            self._httpx = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=None)
        request = self._httpx.build_request("POST", url, content=body, headers=headers)
        reply = await self._httpx.send(request, stream=True)
        content_type = reply.headers.get("content-type", "application/json")
        return reply.status_code, content_type, reply.aiter_raw(), reply.aclose


class Forwarder:
    def __init__(self, upstream_root: str, client: str) -> None:
        self.root = upstream_root
        self.upstream = Upstream(client)

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            body, headers = _READY
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        sent = [("content-type", "application/json"), ("authorization", "Bearer bench")]
        status, content_type, answer, release = await self.upstream.post(
            self.root + scope["path"], b"".join(chunks), sent
        )
        try:
            start = {"type": "http.response.start", "status": status,
                     "headers": [(b"content-type", content_type.encode())]}  # fmt: skip
            await send(start)
            async for chunk in answer:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await release()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forwarder")
    parser.add_argument("client", choices=("aiohttp", "httpx-aiohttp", "httpx-transport"))
    parser.add_argument("command", choices=("serve",))
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=0, help="must be 0: the floor serves no gRPC")
    args = parser.parse_args(argv)
    if args.grpc_port:
        parser.error("the floor forwarder serves no gRPC (--grpc-port 0)")
    with open(args.config) as file:
        providers = yaml.safe_load(file)["providers"]
    base = urlsplit(next(iter(providers.values()))["base_url"])
    app = Forwarder(f"{base.scheme}://{base.netloc}", args.client)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", lifespan="off",
        access_log=False, log_level="warning",
    )  # fmt: skip
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
