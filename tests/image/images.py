"""The two images the tests need: a Debian base made from packages, and Detour's image built on it.

No registry is reachable where the tests run, so `python:3.12-slim` cannot be pulled. The base is
made with mmdebstrap from Debian's own packages instead (Python 3.11 with its venv module and the
C++ runtime grpcio links, the smallest variant that has them) and imported into podman; the
Dockerfile takes it as BASE_IMAGE.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Mapping

from tests.image.tools import podman, run

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-image"
IMAGE_TAG = "localhost/detour:test"
BASE_REPOSITORY = "localhost/detour-test-base"

_MERGED_USR_HOOK = pathlib.Path("/usr/share/mmdebstrap/hooks/merged-usr")
_SYSTEM_CA_BUNDLE = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")


def mmdebstrap_command(target: str) -> list[str]:
    """Everything that decides the base's contents, so that it also keys the cached image."""
    mirror = os.environ.get("DETOUR_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    # libstdc++6: grpcio links it, and python:3.12-slim has it (through apt, which the essential
    # variant leaves out).
    options = ["--quiet", "--variant=essential", "--include=python3-venv,libstdc++6"]
    if _MERGED_USR_HOOK.is_dir():
        # Sets up the merged /usr itself; otherwise the usrmerge package drags in all of Perl (50 MB).
        options.append(f"--hook-dir={_MERGED_USR_HOOK}")
    options += [f"--dpkgopt=path-exclude=/usr/share/{part}/*" for part in ("doc", "man", "info", "locale")]
    return ["mmdebstrap", *options, "bookworm", target, mirror]


def ensure_base_image(env: Mapping[str, str], scratch: pathlib.Path) -> str:
    """The Debian base, built once per machine and set of inputs (about 40 s), then reused."""
    key = hashlib.sha256("\0".join(mmdebstrap_command("-")).encode()).hexdigest()[:12]
    tag = f"{BASE_REPOSITORY}:{key}"
    if run(["podman", "image", "exists", tag], env, check=False).returncode == 0:
        return tag
    tarball = scratch / "base.tar"
    run(mmdebstrap_command(str(tarball)), env, timeout=600)
    try:
        podman("import", "--quiet", str(tarball), tag, env=env, timeout=300)
    finally:
        tarball.unlink(missing_ok=True)
    return tag


def ca_bundle() -> pathlib.Path | None:
    """The CA bundle this machine trusts, for pip inside the build (a TLS-inspecting proxy's CA)."""
    for candidate in (
        os.environ.get("DETOUR_BUILD_CA_BUNDLE"),
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        str(_SYSTEM_CA_BUNDLE),
    ):
        if candidate and pathlib.Path(candidate).is_file():
            return pathlib.Path(candidate)
    return None


def build_detour_image(env: Mapping[str, str], base: str) -> str:
    """Build the image with the project's own script, the way a user would, and return its tag.

    buildah is chosen explicitly so a Docker daemon on a developer's machine does not take the
    build where podman cannot see it. Host networking for the build's RUN steps needs no bridge or
    firewall set up on the machine. The image the tag named before is removed once it is replaced,
    so repeated runs leave no pile of old images behind.
    """
    previous = _image_id(env, IMAGE_TAG)
    command = [str(BUILD_SCRIPT), "--builder", "buildah", "--tag", IMAGE_TAG, "--base-image", base]
    bundle = ca_bundle()
    if bundle is not None:
        command += ["--ca-bundle", str(bundle)]
    printed = run([*command, "--", "--network", "host"], env, timeout=600).stdout.strip()
    if printed != IMAGE_TAG:
        raise AssertionError(f"build-image printed {printed!r}, not the tag {IMAGE_TAG!r}")
    if previous is not None and previous != _image_id(env, IMAGE_TAG):
        run(["podman", "image", "rm", previous], env, check=False)
    return IMAGE_TAG


def _image_id(env: Mapping[str, str], tag: str) -> str | None:
    result = run(["podman", "image", "inspect", "--format", "{{.Id}}", tag], env, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None
