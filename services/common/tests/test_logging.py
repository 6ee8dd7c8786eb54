from __future__ import annotations

import logging

import orjson
import pytest

from carevault_common.logging import JsonFormatter, Verbatim, redact, redact_value, request_id_var


@pytest.mark.parametrize(
    "text",
    [
        "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "key q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng",
        "mail jane.doe@example.org",
        "call +33 6 12 34 56 78",
        "call 06.12.34.56.78",
        "call (555) 123-4567",
    ],
)
def test_redaction_masks_secrets_and_contact_data(text: str) -> None:
    masked = redact(text)
    assert "[redacted" in masked
    for secret in ("eyJzdWIi", "q83vEjRW", "jane.doe", "12 34 56", "12.34.56", "123-4567"):
        assert secret not in masked


def test_addresses_and_ports_are_not_mistaken_for_phones() -> None:
    assert redact("listening on https://127.0.0.1:8444") == "listening on https://127.0.0.1:8444"


def test_json_lines_carry_request_id_and_redacted_extras() -> None:
    token = request_id_var.set("rid-1")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("jane@example.org",), None)
        record.peer = "records"
        line = orjson.loads(JsonFormatter("api").format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "rid-1"
    assert line["service"] == "api"
    assert line["peer"] == "records"
    assert "jane" not in line["msg"]


def test_file_keys_in_transport_form_are_redacted() -> None:
    from carevault_common.logging import redact

    file_key = "AQ" + "x7" * 21  # base64url of 0x01 | 32 bytes: 44 characters
    assert file_key not in redact(f"x-file-key: {file_key}")
    blob_id = "Abc" * 10 + "de"  # 32-character blob ids are not keys
    assert blob_id in redact(f"blob {blob_id}")


def test_a_verbatim_value_reaches_the_log_unchanged_where_plain_text_is_filtered() -> None:
    # A base64url signature can hold a run that looks like a UK postcode ("AB12CD"):
    # the filter would rewrite it, and `audit verify --log-checkpoints` would then
    # report the logged checkpoint as forged (seen once in the suite).
    signature = "K3za82TpFa1ZtrzHUewKrGJMwTE7i-AB12CD-ZHPIBg"
    assert redact_value(signature) != signature
    assert redact_value(Verbatim(signature), "signature") == signature
    record = logging.LogRecord("carevault.api.audit", logging.INFO, __file__, 1, "audit checkpoint", None, None)
    record.signature = Verbatim(signature)
    assert orjson.loads(JsonFormatter("api").format(record))["signature"] == signature
