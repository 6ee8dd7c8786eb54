"""What records tells api about a request, for api's audit trail: which patients'
data the request reached for. They go out in sign-in's ``x-carevault-patient``
header (:mod:`carevault_records.patient_header`), beside the patients whose
keyrings the request asked for.

A patient is noted as soon as a request names their data, before any key check:
an attempt with a wrong key is an access attempt the patient may ask about. api
strips the header before anything reaches the client (x-carevault-* headers are
the mesh's own).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_touched: ContextVar[set[str] | None] = ContextVar("carevault_records_patients_touched", default=None)


def note_patient(patient_id: str) -> None:
    """Record that the current request reached for ``patient_id``'s data."""
    touched = _touched.get()
    if touched is not None:
        touched.add(patient_id)


def noted_patients() -> set[str]:
    """The patients the current request reached for so far."""
    return set(_touched.get() or ())


@contextmanager
def noting_patients() -> Iterator[None]:
    """The scope of one request: the patients noted inside it are its own."""
    token = _touched.set(set())
    try:
        yield
    finally:
        _touched.reset(token)
