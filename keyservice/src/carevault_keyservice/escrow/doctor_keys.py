"""The active hosting-doctor public keys, read from a directory (a mounted
Secret or ConfigMap in Kubernetes): one ``*.pub`` file per key.

The directory is re-read when it changes, so adding a key needs no restart.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from carevault_crypto.escrow import DoctorKeyFileError, DoctorPublicKey

logger = logging.getLogger("carevault.keyservice.doctor_keys")


@dataclass(frozen=True)
class Keyset:
    keys: tuple[DoctorPublicKey, ...]

    @property
    def id(self) -> str:
        """Names this set of keys; records re-escrows a patient when it changes."""
        joined = ",".join(sorted(k.key_id for k in self.keys))
        return hashlib.sha256(joined.encode()).hexdigest()[:32]


class DoctorKeyDirectory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stamp: tuple[tuple[str, int], ...] | None = None
        self._keyset = Keyset(())

    def _current_stamp(self) -> tuple[tuple[str, int], ...]:
        if not self.directory.is_dir():
            return ()
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.directory.glob("*.pub")))

    def keyset(self) -> Keyset:
        stamp = self._current_stamp()
        if stamp != self._stamp:
            self._keyset = self._load()
            self._stamp = stamp
        return self._keyset

    def _load(self) -> Keyset:
        keys: list[DoctorPublicKey] = []
        for path in sorted(self.directory.glob("*.pub")) if self.directory.is_dir() else []:
            try:
                keys.append(DoctorPublicKey.from_text(path.read_text(encoding="utf-8")))
            except (DoctorKeyFileError, OSError, UnicodeDecodeError):
                # A broken key file must not silently drop escrow: readiness fails below.
                logger.error("unreadable doctor public key file", extra={"file": path.name})
                raise
        logger.info("doctor keys loaded", extra={"key_ids": [k.key_id for k in keys]})
        return Keyset(tuple(keys))
