"""Unit tests for github_app.intake.webhooks: content type, signature, body decoding, routing."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from github_app.errors import WebhookError
from github_app.event_models import parse_event
from github_app.intake.webhooks import (
    check_content_type,
    decode_body,
    make_envelope,
    routing_fields,
    verify_signature,
)

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))
SECRET = "It's a Secret to Everybody"
BODY = b'{"action":"opened","zen":"Keep it logically awesome."}'

# Example deliveries from @octokit/webhooks-examples 7.6.1 that the pinned githubkit-schemas
# (26.8.14) rejects: the older examples lack fields the schema now requires.
UNPARSEABLE_FIXTURES = {
    "issues.edited.json": "issue.active_lock_reason, issue.reactions, labels[].description",
    "installation.created.json": "installation.app_slug",
}


def sign(secret: str, body: bytes, algorithm: str = "sha256") -> str:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    return f"{algorithm}={digest}"


def load_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return loaded


# --- content type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("Application/JSON ; charset=UTF-8", "json"),
        ("application/x-www-form-urlencoded", "form"),
        ("application/x-www-form-urlencoded; charset=utf-8", "form"),
    ],
)
def test_check_content_type_accepts_json_and_form(content_type: str, kind: str) -> None:
    assert check_content_type(content_type) == kind


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "", None])
def test_check_content_type_refuses_anything_else_with_415(content_type: str | None) -> None:
    with pytest.raises(WebhookError) as info:
        check_content_type(content_type)
    assert info.value.status_code == 415
    assert info.value.reason == "unsupported_media_type"


# --- signature ------------------------------------------------------------------------------


def test_verify_signature_accepts_a_correct_sha256_signature() -> None:
    verify_signature(SECRET, BODY, sign(SECRET, BODY))


def test_verify_signature_matches_githubs_documented_example() -> None:
    # From GitHub's "Validating webhook deliveries" documentation.
    verify_signature(
        SECRET,
        b"Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )


@pytest.mark.parametrize("signature", [None, ""])
def test_verify_signature_missing_header_is_401_missing_signature(signature: str | None) -> None:
    with pytest.raises(WebhookError) as info:
        verify_signature(SECRET, BODY, signature)
    assert info.value.status_code == 401
    assert info.value.reason == "missing_signature"


@pytest.mark.parametrize(
    "signature",
    [
        sign("another secret", BODY),
        sign(SECRET, BODY + b" "),
        "sha256=" + "0" * 64,
        "sha256=",
        "garbage",
    ],
)
def test_verify_signature_wrong_signature_is_401(signature: str) -> None:
    with pytest.raises(WebhookError) as info:
        verify_signature(SECRET, BODY, signature)
    assert info.value.status_code == 401
    assert info.value.reason == "bad_signature"


def test_verify_signature_refuses_a_correct_sha1_signature() -> None:
    signature = sign(SECRET, BODY, "sha1")
    assert signature.startswith("sha1=")
    with pytest.raises(WebhookError) as info:
        verify_signature(SECRET, BODY, signature)
    assert info.value.status_code == 401


# --- body -----------------------------------------------------------------------------------


def test_decode_body_parses_a_json_object() -> None:
    raw, payload = decode_body(BODY, "json")
    assert raw == BODY
    assert payload == {"action": "opened", "zen": "Keep it logically awesome."}


def test_decode_body_reads_json_from_the_payload_field_of_a_form() -> None:
    form = urlencode({"payload": BODY.decode()}).encode()
    raw, payload = decode_body(form, "form")
    assert json.loads(raw) == payload
    assert payload["zen"] == "Keep it logically awesome."


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe{}", b'{"a": 1'])
def test_decode_body_malformed_json_is_400(body: bytes) -> None:
    with pytest.raises(WebhookError) as info:
        decode_body(body, "json")
    assert info.value.status_code == 400
    assert info.value.reason == "malformed_json"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_decode_body_json_that_is_not_an_object_is_400(body: bytes) -> None:
    with pytest.raises(WebhookError) as info:
        decode_body(body, "json")
    assert info.value.status_code == 400


def test_decode_body_form_without_payload_field_is_400() -> None:
    with pytest.raises(WebhookError) as info:
        decode_body(urlencode({"other": "{}"}).encode(), "form")
    assert info.value.status_code == 400
    assert info.value.reason == "malformed_body"


def test_decode_body_form_with_malformed_json_payload_is_400() -> None:
    with pytest.raises(WebhookError) as info:
        decode_body(urlencode({"payload": "{nope"}).encode(), "form")
    assert info.value.status_code == 400


# --- routing fields -------------------------------------------------------------------------


def test_routing_fields_of_the_issues_opened_fixture() -> None:
    fields = routing_fields(load_fixture("issues.opened.json"))
    assert fields["action"] == "opened"
    assert fields["repository"] == "Codertocat/Hello-World"
    assert fields["issue_number"] == 1
    assert fields["sender_login"] == "Codertocat"
    assert fields["sender_type"] == "User"


def test_routing_fields_of_the_installation_created_fixture() -> None:
    fields = routing_fields(load_fixture("installation.created.json"))
    assert fields["action"] == "created"
    assert fields["installation_id"] == 957387
    assert fields["issue_number"] is None


def test_routing_fields_of_a_push_have_no_action_and_no_issue() -> None:
    fields = routing_fields(load_fixture("push.json"))
    assert fields["action"] is None
    assert fields["issue_number"] is None
    assert fields["repository"] == "Codertocat/Hello-World"


def test_routing_fields_fall_back_to_the_pull_request_number() -> None:
    fields = routing_fields({"pull_request": {"number": 12}, "repository": {"full_name": "o/r"}})
    assert fields["issue_number"] == 12


def test_routing_fields_of_an_empty_payload_are_all_none() -> None:
    assert set(routing_fields({}).values()) == {None}


@pytest.mark.parametrize(
    "payload",
    [
        {
            "action": 5,
            "installation": {"id": "12"},
            "repository": {"full_name": ["o", "r"]},
            "issue": {"number": "1"},
            "sender": {"login": 7, "type": None},
        },
        {
            "action": None,
            "installation": 12,
            "repository": "o/r",
            "issue": [1],
            "pull_request": "3",
            "sender": "Codertocat",
        },
        {"installation": None, "repository": None, "issue": None, "sender": None},
    ],
)
def test_routing_fields_of_odd_shapes_are_none_without_crashing(payload: dict[str, Any]) -> None:
    fields = routing_fields(payload)
    assert set(fields) == {
        "action",
        "installation_id",
        "repository",
        "issue_number",
        "sender_login",
        "sender_type",
    }
    assert set(fields.values()) == {None}


def test_make_envelope_compresses_the_body_and_keeps_routing_fields() -> None:
    payload = load_fixture("issues.opened.json")
    body = json.dumps(payload).encode()
    envelope = make_envelope(
        delivery_id="d-1",
        event="issues",
        json_body=body,
        payload=payload,
        received_at=12.5,
        compress=lambda raw: raw[::-1],
    )
    assert envelope.payload == body[::-1]
    assert envelope.raw_size == len(body)
    assert envelope.name == "issues.opened"
    assert envelope.issue_key == ("Codertocat/Hello-World", 1)
    assert envelope.received_at == 12.5


# --- typed parsing --------------------------------------------------------------------------


def test_every_fixture_is_covered_by_the_parse_test() -> None:
    assert len(FIXTURE_FILES) >= 9
    assert set(UNPARSEABLE_FIXTURES) <= {path.name for path in FIXTURE_FILES}


@pytest.mark.parametrize(
    "path",
    [path for path in FIXTURE_FILES if path.name not in UNPARSEABLE_FIXTURES],
    ids=lambda path: path.name,
)
def test_parse_event_turns_every_fixture_into_a_typed_model_with_its_action(path: Path) -> None:
    event, _, rest = path.name.partition(".")
    expected_action = rest.removesuffix("json").rstrip(".") or None
    model = parse_event(event, orjson.loads(path.read_bytes()))
    assert isinstance(model, BaseModel)
    assert type(model).__name__.startswith("Webhook")
    assert getattr(model, "action", None) == expected_action
    assert model.sender.login == "Codertocat"


@pytest.mark.parametrize("name", sorted(UNPARSEABLE_FIXTURES))
def test_githubs_older_examples_fail_the_pinned_schema_so_processors_also_get_the_raw_payload(
    name: str,
) -> None:
    # GitHub's own examples predate fields the schema now requires; the runner therefore
    # passes ``event=None`` plus the raw payload instead of dropping such an event.
    with pytest.raises(ValidationError):
        parse_event(name.split(".")[0], orjson.loads((FIXTURES / name).read_bytes()))


def test_parse_event_gives_the_issue_as_typed_fields() -> None:
    model = parse_event("issues", orjson.loads((FIXTURES / "issues.opened.json").read_bytes()))
    assert type(model).__name__ == "WebhookIssuesOpened"
    assert model.issue.number == 1
    assert model.repository.full_name == "Codertocat/Hello-World"


def test_parse_event_unknown_event_name_is_400() -> None:
    with pytest.raises(WebhookError) as info:
        parse_event("not_an_event", {})
    assert info.value.status_code == 400
    assert info.value.reason == "unknown_event"
