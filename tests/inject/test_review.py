"""AdmissionReview in, response out: every review the injector cannot use is allowed unpatched."""

from __future__ import annotations

import base64
import json

import pytest

from sidecar.inject.review import review
from sidecar.inject.settings import InjectorSettings
from tests.inject import pods

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def answer(raw: bytes) -> dict:
    reviewed = review(raw, InjectorSettings(), image="detour:test", version="0.1.0")
    assert reviewed.body["apiVersion"] == "admission.k8s.io/v1"
    assert reviewed.body["kind"] == "AdmissionReview"
    return reviewed.body["response"]


def test_a_pod_review_is_answered_with_its_uid_and_a_base64_json_patch() -> None:
    response = answer(json.dumps(pods.review_of(pods.PLAIN, uid=UID)).encode())

    assert response["uid"] == UID
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert {"op": "add", "path": "/metadata/annotations", "value": {"detour.dev/injected": "0.1.0"}} in patch
    assert "warnings" not in response


def test_an_opted_out_pod_is_allowed_without_a_patch() -> None:
    response = answer(json.dumps(pods.review_of(pods.OPTED_OUT, uid=UID)).encode())

    assert response == {"uid": UID, "allowed": True}


def _review(**request_changes: object) -> bytes:
    document = pods.review_of(pods.PLAIN, uid=UID)
    document["request"].update(request_changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("raw", "uid", "reason"),
    [
        (b"{not json", "", "not JSON"),
        (b"[]", "", "no 'request' object"),
        (b'{"request": "x"}', "", "no 'request' object"),
        (b'{"request": {"object": {}}}', "", "no request.uid"),
        (_review(kind={"group": "apps", "version": "v1", "kind": "Deployment"}), UID, "not a Pod review"),
        (_review(operation="UPDATE"), UID, "is not CREATE"),
        (_review(object=None), UID, "request.object is not a pod"),
        (_review(object={"metadata": {}, "spec": {"containers": "app"}}), UID, "spec.containers must be"),
        (
            _review(object={"metadata": {"name": "x"}, "spec": {"containers": []}}),
            UID,
            "spec.containers is empty",
        ),
    ],
)
def test_a_review_the_injector_cannot_use_is_allowed_unpatched_with_a_warning(
    raw: bytes, uid: str, reason: str
) -> None:
    reviewed = review(raw, InjectorSettings(), image="detour:test", version="0.1.0")
    response = reviewed.body["response"]

    assert response["uid"] == uid
    assert response["allowed"] is True
    assert "patch" not in response
    assert reason in response["warnings"][0]
    assert reviewed.problem
    assert reason in reviewed.log_line


def test_hostile_input_reaches_the_log_as_one_bounded_line() -> None:
    reviewed = review(
        _review(operation="X" * 10_000 + "\nforged log line"),
        InjectorSettings(),
        image="detour:test",
        version="0.1.0",
    )

    assert "\n" not in reviewed.log_line
    assert len(reviewed.log_line) < 300
