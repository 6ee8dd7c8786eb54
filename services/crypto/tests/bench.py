"""Micro-benchmarks quoted in services/crypto/README.md.

Run from services/crypto: ``python tests/bench.py`` (not collected by pytest).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from carevault_crypto import (
    FileKey,
    PatientContext,
    PatientKey,
    PatientKeyring,
    RecordContext,
    StreamingDecryptor,
    StreamingEncryptor,
    create_verifier,
    verify_patient_key,
)
from carevault_crypto.streaming import HEADER_SIZE


def per_call_us(func: Callable[[], object], number: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def main() -> None:
    ctx = PatientContext("tenant-demo", "patient-0001")
    rc = RecordContext(ctx.tenant, ctx.patient_id, "record-1", 1, "Observation")
    key = PatientKey.generate()
    keyring, wrapped = PatientKeyring.create(key, ctx)
    verifier = create_verifier(key, ctx)
    body = bytes(1024)
    blob = keyring.seal_record(body, rc)

    def round_trip() -> None:
        keyring.open_record(keyring.seal_record(body, rc), rc)

    rows = {
        "seal_record 1 KiB": per_call_us(lambda: keyring.seal_record(body, rc), 20_000),
        "open_record 1 KiB": per_call_us(lambda: keyring.open_record(blob, rc), 20_000),
        "seal_record + open_record 1 KiB": per_call_us(round_trip, 20_000),
        "verify_patient_key": per_call_us(lambda: verify_patient_key(key, ctx, verifier), 20_000),
        "PatientKeyring.open": per_call_us(lambda: PatientKeyring.open(key, ctx, wrapped), 20_000),
        "blind_index": per_call_us(lambda: keyring.blind_index("identifier", "123"), 20_000),
    }
    for name, us in rows.items():
        print(f"{name:36s} {us:8.1f} us/call")

    file_key = FileKey.generate()
    data = bytes(range(256)) * (64 * 4096)  # 64 MiB, pages touched
    step = 1024 * 1024
    enc_best = dec_best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        enc = StreamingEncryptor(file_key, b"bench")
        parts = [enc.header]
        parts += [enc.update(data[i : i + step]) for i in range(0, len(data), step)]
        parts.append(enc.finalize())
        enc_best = min(enc_best, time.perf_counter() - start)
        stored = b"".join(parts)
        start = time.perf_counter()
        dec = StreamingDecryptor(file_key, b"bench", stored[:HEADER_SIZE])
        view = memoryview(stored)[HEADER_SIZE:]
        for i in range(0, len(view), step):
            dec.update(view[i : i + step])
        dec.finalize()
        dec_best = min(dec_best, time.perf_counter() - start)
    mib = len(data) / 2**20
    print(f"{'streaming encrypt, 64 KiB segments':36s} {mib / enc_best:8.0f} MiB/s")
    print(f"{'streaming decrypt, 64 KiB segments':36s} {mib / dec_best:8.0f} MiB/s")


if __name__ == "__main__":
    main()
