"""Patient keys: register, check, unlock, rotate, and keep them escrowed.

The client's key never reaches a table: only its verifier and the per-patient
keyring wrapped under it are stored. Every check happens before any decryption.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from carevault_crypto import DecryptionError, PatientContext, PatientKey, PatientKeyring, create_verifier, verify_patient_key
from carevault_records.audit_hints import note_patient
from carevault_records.clients.keyservice import KeyserviceClient
from carevault_records.erasure import repository as erasure
from carevault_records.errors import (
    INTEGRITY_FAILURES,
    IntegrityFailure,
    PatientErased,
    PatientKeyRequired,
    PatientOutOfScope,
    UnknownPatient,
    WrongPatientKey,
)
from carevault_records.keys import repository
from carevault_records.keys.repository import KeyMaterial

logger = logging.getLogger("carevault.records.keys")


class PatientKeys:
    def __init__(self, keyservice: KeyserviceClient) -> None:
        self.keyservice = keyservice

    async def register(self, session: AsyncSession, tenant: str, patient_id: str, key: PatientKey) -> PatientKeyring:
        """First use of a key: verifier, keyring, escrow. Escrow failing fails the
        whole request (503) before the transaction commits, so nothing is written."""
        context = PatientContext(tenant, patient_id)
        keyring, wrapped = PatientKeyring.create(key, context)
        keyset = await self.keyservice.escrow(tenant=tenant, patient_id=patient_id, key_version=1, key=key)
        await repository.insert_patient(
            session,
            tenant=tenant,
            patient_id=patient_id,
            verifier=create_verifier(key, context),
            wrapped_keyring=wrapped,
            escrow_keyset=keyset,
            now=datetime.now(UTC),
        )
        return keyring

    async def unlock(
        self, session: AsyncSession, tenant: str, patient_id: str, key: PatientKey, material: KeyMaterial | None = None
    ) -> PatientKeyring:
        """Check ``key`` against the patient's verifier, then open their keyring.
        ``material``: the patient's key material when the caller fetched it already
        (in the same query as the record), saving a round trip."""
        note_patient(patient_id)
        patient = material or await repository.get_key_material(session, tenant, patient_id)
        if patient is None:
            if await erasure.is_erased(session, tenant, "Patient", patient_id):
                raise PatientErased()
            raise UnknownPatient()
        context = PatientContext(tenant, patient_id)
        if not verify_patient_key(key, context, patient.verifier):
            raise WrongPatientKey()
        try:
            keyring = PatientKeyring.open(key, context, patient.wrapped_keyring)
        except DecryptionError:
            INTEGRITY_FAILURES.labels("Patient").inc()
            logger.error("integrity failure", extra={"event": "integrity-failure", "object": "patient-keyring"})
            raise IntegrityFailure() from None
        # A hosting-doctor key added since this key was escrowed: escrow to it now.
        current = await self.keyservice.current_keyset()
        if patient.escrow_keyset != current:
            keyset = await self.keyservice.escrow(tenant=tenant, patient_id=patient_id, key_version=patient.key_version, key=key)
            await repository.set_escrow_keyset(session, tenant, patient_id, patient.key_version, keyset)
        return keyring

    async def rotate(self, session: AsyncSession, tenant: str, patient_id: str, old: PatientKey, new: PatientKey) -> int:
        """Rewrap the keyring under the new key, escrow it, replace the verifier:
        bodies are not re-encrypted. Returns the new key version."""
        keyring = await self.unlock(session, tenant, patient_id, old)
        patient = await repository.get_patient(session, tenant, patient_id)
        assert patient is not None
        context = PatientContext(tenant, patient_id)
        keyset = await self.keyservice.escrow(tenant=tenant, patient_id=patient_id, key_version=patient.key_version + 1, key=new)
        await repository.replace_key(
            session,
            patient,
            verifier=create_verifier(new, context),
            wrapped_keyring=keyring.rewrap(new),
            escrow_keyset=keyset,
            now=datetime.now(UTC),
        )
        return patient.key_version + 1


class RequestKeyrings:
    """The keyrings one request may open: all under the one key it carries,
    each unlocked (verifier checked) at most once per request.

    ``scope`` is the set of patients api authorized this request for (None: any
    patient of the tenant, for the development token and reads api checks
    afterwards). Opening another patient's keyring is refused before the key is
    even checked; patients registered by this very request are in scope.
    ``touched`` lists every patient whose keyring the request asked for, which
    records reports to api in the ``x-carevault-patient`` response header."""

    def __init__(
        self, keys: PatientKeys, session: AsyncSession, tenant: str, key: PatientKey | None, scope: frozenset[str] | None = frozenset()
    ) -> None:
        self.keys, self.session, self.tenant, self.key = keys, session, tenant, key
        self.scope = scope
        self.touched: list[str] = []
        self._registered: set[str] = set()
        self._open: dict[str, PatientKeyring] = {}

    def admit(self, patient_id: str | None) -> None:
        """Refuse a patient (None: several or unknown patients) outside the request's scope."""
        if patient_id is not None and patient_id not in self.touched:
            self.touched.append(patient_id)
        if self.scope is None or (patient_id is not None and (patient_id in self.scope or patient_id in self._registered)):
            return
        raise PatientOutOfScope("This request is not authorized for this patient's records.")

    def _require_key(self) -> PatientKey:
        if self.key is None:
            raise PatientKeyRequired()
        return self.key

    async def register(self, patient_id: str) -> PatientKeyring:
        note_patient(patient_id)
        self._registered.add(patient_id)
        self.admit(patient_id)
        keyring = await self.keys.register(self.session, self.tenant, patient_id, self._require_key())
        self._open[patient_id] = keyring
        return keyring

    async def unlock(self, patient_id: str, material: KeyMaterial | None = None) -> PatientKeyring:
        self.admit(patient_id)
        keyring = self._open.get(patient_id)
        if keyring is None:
            keyring = await self.keys.unlock(self.session, self.tenant, patient_id, self._require_key(), material)
            self._open[patient_id] = keyring
        return keyring
