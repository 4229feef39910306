"""Run `detour inject` as a real process on a free port, with a throwaway CA (trustme)."""

from __future__ import annotations

import os
import pathlib
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trustme

SERVICE_NAMES = ("127.0.0.1", "detour-injector.detour.svc")


@dataclass
class Injector:
    process: subprocess.Popen[str]
    url: str = ""
    log: list[str] = field(default_factory=list)
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def line_containing(self, text: str, *, within_s: float = 10) -> str:
        """Wait for the process to log `text` (it tells us; no polling of its state)."""
        while True:
            try:
                line = self._lines.get(timeout=within_s)
            except queue.Empty:
                raise AssertionError(
                    f"no log line with {text!r} in {within_s} s:\n" + "".join(self.log)
                ) from None
            if line is None:
                raise AssertionError(f"detour inject exited before logging {text!r}:\n" + "".join(self.log))
            self.log.append(line)
            if text in line:
                return line

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put(None)


def write_pair(ca: trustme.CA, directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    cert = ca.issue_cert(*SERVICE_NAMES)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


@contextmanager
def injector(*args: str, cert_file: pathlib.Path, key_file: pathlib.Path) -> Iterator[Injector]:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sidecar.cli.main", "inject",
            "--listen", "127.0.0.1:0",
            "--tls-cert-file", str(cert_file),
            "--tls-key-file", str(key_file),
            "--sidecar-image", "registry.example/detour:0.1.0",
            "--cert-reload-interval", "0.05",
            *args,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    running = Injector(process)
    pump = threading.Thread(target=running._pump, daemon=True)
    pump.start()
    try:
        if "--help" not in args:
            line = running.line_containing("serving https://", within_s=15)
            running.url = line.split("serving ")[1].split("/mutate")[0]
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(10)
        pump.join(5)  # the pipe's end reached: nothing reads it any more
        assert process.stderr is not None
        process.stderr.close()
