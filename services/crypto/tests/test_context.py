"""Canonical context encodings."""

from __future__ import annotations

import dataclasses

import pytest

from carevault_crypto import PatientContext, RecordContext


def test_patient_encoding_is_unambiguous() -> None:
    assert PatientContext("ab", "c").encode() != PatientContext("a", "bc").encode()


def test_record_encoding_is_unambiguous_and_covers_every_field() -> None:
    base = RecordContext("t", "p", "r", 1, "Observation")
    variants = [
        base,
        dataclasses.replace(base, tenant="t2"),
        dataclasses.replace(base, patient_id="p2"),
        dataclasses.replace(base, record_id="r2"),
        dataclasses.replace(base, version=2),
        dataclasses.replace(base, resource_type="Patient"),
    ]
    assert len({v.encode() for v in variants}) == len(variants)
    assert RecordContext("t", "pr", "x", 1, "A").encode() != RecordContext("t", "p", "rx", 1, "A").encode()


def test_patient_and_record_encodings_are_domain_separated() -> None:
    assert not RecordContext("t", "p", "r", 0, "A").encode().startswith(PatientContext("t", "p").encode())


def test_patient_property() -> None:
    rc = RecordContext("t", "p", "r", 0, "A")
    assert rc.patient == PatientContext("t", "p")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant": ""},
        {"patient_id": ""},
        {"record_id": ""},
        {"resource_type": ""},
        {"version": -1},
        {"version": 2**64},
        {"version": True},
        {"version": "1"},
        {"tenant": 3},
        {"record_id": "\ud800"},
    ],
)
def test_record_context_validation(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "tenant": "t",
        "patient_id": "p",
        "record_id": "r",
        "version": 0,
        "resource_type": "A",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError):
        RecordContext(**fields)  # type: ignore[arg-type]


def test_contexts_are_frozen() -> None:
    ctx = PatientContext("t", "p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.tenant = "x"  # type: ignore[misc]
