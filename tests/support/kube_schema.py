"""Validate rendered objects as the API server would: kubernetes-validate's strict schemas (unknown
fields are errors) for Kubernetes' own kinds, a structural check for cert-manager's, whose CRD
schemas kubernetes-validate does not carry.

Kubernetes 1.29 is the first release with native sidecars (init containers with restartPolicy: Always) on by
default; its schema has `initContainers[].restartPolicy`.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.29"

_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_CERTIFICATE_SPEC = {
    "secretName", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses", "duration",
    "renewBefore", "privateKey", "usages", "issuerRef", "isCA", "subject", "secretTemplate",
    "revisionHistoryLimit", "keystores", "literalSubject", "nameConstraints", "otherNames",
    "encodeUsagesInRequest", "additionalOutputFormats",
}  # fmt: skip
_USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
}  # fmt: skip
_ISSUER_TYPES = {"selfSigned", "ca", "acme", "vault", "venafi"}


def object_name(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{obj.get('kind')} {metadata.get('namespace', '')}/{metadata.get('name')}"


def assert_valid(obj: dict[str, Any]) -> None:
    if str(obj.get("apiVersion", "")).startswith("cert-manager.io/"):
        _assert_valid_cert_manager(obj)
        return
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(step) for step in exc.path)
        raise AssertionError(f"{object_name(obj)}: {where}: {exc.message}") from exc


def _assert_valid_cert_manager(obj: dict[str, Any]) -> None:
    name = object_name(obj)
    assert obj["apiVersion"] == "cert-manager.io/v1", name
    assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}, name
    metadata = obj["metadata"]
    assert metadata.get("name"), name
    spec = obj["spec"]
    if obj["kind"] in ("Issuer", "ClusterIssuer"):
        assert metadata.get("namespace") or obj["kind"] == "ClusterIssuer", name
        types = set(spec) & _ISSUER_TYPES
        assert len(types) == 1, f"{name}: one issuer type, got {sorted(spec)}"
        assert set(spec) == types, f"{name}: unknown fields {sorted(set(spec) - types)}"
        if "ca" in spec:
            assert set(spec["ca"]) <= {"secretName", "crlDistributionPoints", "ocspServers"}, name
            assert spec["ca"].get("secretName"), name
        if "selfSigned" in spec:
            assert set(spec["selfSigned"]) <= {"crlDistributionPoints"}, name
    elif obj["kind"] == "Certificate":
        assert metadata.get("namespace"), name
        assert set(spec) <= _CERTIFICATE_SPEC, (
            f"{name}: unknown fields {sorted(set(spec) - _CERTIFICATE_SPEC)}"
        )
        assert spec.get("secretName"), name
        assert spec.get("commonName") or spec.get("dnsNames"), name
        reference = spec.get("issuerRef") or {}
        assert reference.get("name"), name
        assert set(reference) <= {"name", "kind", "group"}, name
        assert reference.get("kind", "Issuer") in ("Issuer", "ClusterIssuer"), name
        for field in ("duration", "renewBefore"):
            assert field not in spec or _DURATION.match(spec[field]), f"{name}: {field}"
        assert set(spec.get("usages", [])) <= _USAGES, name
        key = spec.get("privateKey", {})
        assert set(key) <= {"algorithm", "size", "encoding", "rotationPolicy"}, name
        assert key.get("algorithm", "RSA") in ("RSA", "ECDSA", "Ed25519"), name
        assert key.get("rotationPolicy", "Never") in ("Never", "Always"), name
        assert isinstance(spec.get("isCA", False), bool), name
    else:
        raise AssertionError(f"{name}: not a cert-manager kind this chart uses")
