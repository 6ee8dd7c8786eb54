"""The one redaction filter: canaries of every kind never leave through logs, spans
or error reports (the cross-service version of this runs on the mesh:
tests/security/test_redaction.py)."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from carevault_common.logging import JsonFormatter, redact, redact_value
from carevault_common.telemetry import RedactingSpanExporter, _sentry_before_send
from tests.telemetry_sink import TelemetrySink

PATIENT_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()

# What each kind of personal data looks like in text, and the part that must go.
PATTERNED = {
    "phone-international": ("call +33 6 42 17 93 58 now", "42 17 93"),
    "phone-international-compact": ("call +33642179358 now", "642179358"),
    "phone-local-fr": ("call 06 42 17 93 58 now", "42 17 93"),
    "phone-local-dotted": ("call 06.42.17.93.58 now", "42.17.93"),
    "phone-local-us": ("call (555) 014-2299 now", "014-2299"),
    "phone-local-short": ("call 555-0142 now", "555-0142"),
    "email": ("write to marguerite.canary@example.org", "marguerite.canary"),
    "address-fr": ("lives 12 bis, rue des Canaris 75011 Paris", "Canaris"),
    "address-fr-no-number": ("lives avenue Victor Canari", "Canari"),
    "address-uk": ("lives at 221B Baker Street, London NW1 6XE", "Baker"),
    "postcode-town": ("moved to 69003 Lyon", "69003"),
    "nir": ("nir 2 84 05 75 115 011 42", "115 011"),
    "iban": ("iban FR76 3000 6000 0112 3456 7890 189", "0112 3456"),
    "bearer-jwt": ("Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "eyJzdWIi"),
    "bearer-opaque": ("authorization: bearer 8f14e45fceea167a5a36dedd4bea2543", "8f14e45f"),
    "dpop": ("DPoP eyJhbGciOiJFUzI1NiJ9.eyJodG0iOiJHRVQifQ.c2ln", "eyJodG0i"),
    "token-in-query": ("GET /cb?code=SplxlOBeZQQYbYS6WxSbIA&state=x", "SplxlOBe"),
    "patient-key": (f"x-patient-key: {PATIENT_KEY}", PATIENT_KEY),
    "patient-key-hex": (f"key {secrets.token_bytes(32).hex()}", None),
}
# Names and free text have no pattern: they are masked by the key they sit under.
STRUCTURED = {
    "name": {"name": [{"family": "Canaryfamily", "given": ["Marguerite"]}]},
    "free-text": {"note": [{"text": "Patient says the canary sings at night"}]},
    "narrative": {"text": {"div": "<div>Canary narrative</div>"}},
    "display": {"code": {"coding": [{"display": "Canary display"}]}},
}


@pytest.mark.parametrize("kind", sorted(PATTERNED))
def test_redact_masks_each_kind(kind: str) -> None:
    text, secret = PATTERNED[kind]
    masked = redact(text)
    assert "[redacted" in masked
    assert (secret or text.split()[-1]) not in masked


@pytest.mark.parametrize("kind", sorted(STRUCTURED))
def test_redact_value_masks_names_and_free_text_by_key(kind: str) -> None:
    dumped = json.dumps(redact_value(STRUCTURED[kind]))
    assert "anary" not in dumped and "Marguerite" not in dumped


def test_ids_routes_and_timestamps_are_left_alone() -> None:
    for text in (
        "GET /fhir/{resource_type}/{resource_id}/_history/{version_id}",
        "uuid 3f2c1d7e-8a9b-4c5d-9e0f-123456789abc trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "at 2026-01-01T12:00:00.000Z took 12.5 ms, status 503",
        "listening on https://127.0.0.1:8444",
        "connection will close now",
    ):
        assert redact(text) == text
    assert redact_value({"status": 200, "duration_ms": 1.5, "ok": True, "route": "/fhir"}) == {
        "status": 200,
        "duration_ms": 1.5,
        "ok": True,
        "route": "/fhir",
    }


def test_log_lines_redact_messages_and_structured_extras() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", (PATTERNED["email"][0],), None)
    record.resource = STRUCTURED["name"]
    record.header = PATTERNED["patient-key"][0]
    line = JsonFormatter("api").format(record)
    for secret in ("marguerite.canary", "Canaryfamily", "Marguerite", PATIENT_KEY):
        assert secret not in line
    assert orjson.loads(line)["resource"] == {"name": "[redacted]"}


def test_spans_leave_the_process_redacted() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(memory)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /fhir/Patient/marguerite.canary@example.org") as span:
        span.set_attribute("http.route", "/fhir/{path:path}")
        span.set_attribute("patient.name", "Canaryfamily")
        span.set_attribute("http.url", f"/fhir/Patient?phone=+33642179358&key={PATIENT_KEY}")
        span.add_event("retry", {"note": "the canary sings", "peer": "records"})
        span.set_attribute("url.query", "family=Canaryfamily")
    (exported,) = memory.get_finished_spans()
    dumped = exported.to_json()
    for secret in ("marguerite.canary", "Canaryfamily", "642179358", PATIENT_KEY, "the canary sings"):
        assert secret not in dumped, secret
    assert exported.attributes is not None and exported.attributes["http.route"] == "/fhir/{path:path}"
    assert exported.attributes["http.url"] == "[redacted]"  # not on the allow-list: masked whatever it holds
    assert exported.events[0].attributes is not None and exported.events[0].attributes["peer"] == "[redacted]"


def test_fastapi_native_telemetry_is_off() -> None:
    """FastAPI's own spans carry url.query and url.path raw (found by the mesh canary test)."""
    from carevault_common.app import build_app

    app = build_app("test")
    assert app._telemetry["tracing"] is False and app._telemetry["logs"] is False  # type: ignore[attr-defined]


def test_sentry_before_send_keeps_only_allowed_keys_and_redacts_them() -> None:
    event = {
        "event_id": "a" * 32,
        "level": "error",
        "message": "Canaryfamily",
        "extra": {"sys.argv": ["--token", PATIENT_KEY]},
        "request": {"url": "/fhir/Patient?name=Canaryfamily", "headers": {"authorization": "Bearer x"}},
        "breadcrumbs": {"values": [{"message": "marguerite.canary@example.org"}]},
        "user": {"email": "marguerite.canary@example.org"},
        "tags": {"patient_email": "marguerite.canary@example.org", "route": "/fhir"},
        "contexts": {"request": {"url": "x"}, "runtime": {"version": "3.11"}, "user": {"id": "u"}},
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": "bad value Canaryfamily",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"body": "Canaryfamily"}, "context_line": "x = 'Canaryfamily'"}]},
                }
            ]
        },
    }
    kept = _sentry_before_send(event, {})
    assert kept is not None
    assert set(kept) <= {"event_id", "level", "tags", "contexts", "exception"}
    dumped = json.dumps(kept)
    for secret in ("Canaryfamily", "marguerite.canary", PATIENT_KEY):
        assert secret not in dumped
    assert kept["exception"]["values"][0]["type"] == "ValueError"
    assert kept["contexts"] == {"runtime": {"version": "3.11"}}


SENTRY_SCRIPT = textwrap.dedent(
    """
    import sys
    import sentry_sdk
    from carevault_common.telemetry import configure_error_reports, report_error

    configure_error_reports("api", sys.argv[1], "dev")
    client = sentry_sdk.get_client()
    options = client.options
    assert options["include_local_variables"] is False, options["include_local_variables"]
    assert options["send_default_pii"] is False
    assert options["max_request_body_size"] == "never"

    def handle(resource):
        patient_key = sys.argv[2]
        family = resource["name"][0]["family"]
        raise ValueError(f"cannot store {family} with key {patient_key} for marguerite.canary@example.org")

    try:
        handle({"name": [{"family": "Canaryfamily"}], "telecom": [{"value": "+33 6 42 17 93 58"}]})
    except ValueError as exc:
        report_error(exc)
    sentry_sdk.flush(10)
    """
)


def test_error_reports_sent_over_http_carry_no_local_variables_or_messages(tmp_path: Path) -> None:
    """A real sentry-sdk, in its own process, sending to a local HTTP collector."""
    sink = TelemetrySink(tmp_path / "sink")
    try:
        subprocess.run([sys.executable, "-c", SENTRY_SCRIPT, sink.sentry_dsn, PATIENT_KEY], check=True, timeout=60)
        envelopes = sink.received("sentry")
    finally:
        sink.stop()
    assert envelopes, "no error report reached the collector"
    raw = b"".join(envelopes)
    for secret in (b"Canaryfamily", b"marguerite.canary", b"42 17 93", PATIENT_KEY.encode()):
        assert secret not in raw
    items = [json.loads(line) for line in raw.splitlines() if line.startswith(b"{")]
    events = [i for i in items if "exception" in i]
    assert events and events[0]["exception"]["values"][0]["type"] == "ValueError"
    frames = events[0]["exception"]["values"][0]["stacktrace"]["frames"]
    assert frames and all("vars" not in f for f in frames)
