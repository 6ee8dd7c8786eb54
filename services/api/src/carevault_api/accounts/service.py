"""Accounts: argon2id passwords, TOTP second factor (RFC 6238), recovery codes,
lockout with backoff.

A WebAuthn assertion (:mod:`carevault_api.webauthn.service`) is accepted in place of
a TOTP code by an account that registered a credential.

A TOTP code is accepted once only (RFC 6238 §5.2): the accepted time step is
stored and a code of the same or an earlier step is refused. Roles that
administer or break glass (:data:`SECOND_FACTOR_ROLES`) cannot sign in without
an enrolled second factor.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.accounts import repository
from carevault_api.auth.principal import SECOND_FACTOR_ROLES, Role
from carevault_api.models_identity import Tenant, User
from carevault_api.secrets import TOTP, Secrets
from carevault_api.webauthn import repository as webauthn
from carevault_api.webauthn import service as webauthn_service
from carevault_api.webauthn.service import RelyingParty
from carevault_common.db import session_scope
from carevault_common.errors import Conflict, ProblemError, Unauthorized
from carevault_crypto import DecryptionError

logger = logging.getLogger("carevault.api.accounts")
# argon2id (the library's default type) with RFC 9106's second recommended profile.
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
ISSUER_NAME = "carevault"
TOTP_STEP = 30
TOTP_WINDOW = 1  # steps either side, for clock drift
LOCK_AFTER = 5
LOCK_BASE_SECONDS = 30
LOCK_MAX_SECONDS = 3600
RECOVERY_CODES = 10
MIN_PASSWORD = 12


class LoginFailed(Unauthorized):
    code, title = "login-failed", "Sign-in failed"


class AccountLocked(ProblemError):
    status, code, title = 429, "account-locked", "Too many failed sign-ins"


class SecondFactorRequired(Unauthorized):
    code, title = "second-factor-required", "A second factor is required"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """Shown to the user once: the TOTP secret, its otpauth URI and recovery codes."""

    secret: str
    otpauth_uri: str
    recovery_codes: list[str]


@dataclass(frozen=True, slots=True)
class SignIn:
    user: User
    second_factor: bool
    factor: str = "none"  # totp, recovery-code, webauthn or none (for the audit trail)


def parse_roles(text: str) -> frozenset[Role]:
    return frozenset(Role(r) for r in text.split() if r in Role._value2member_map_)


def format_roles(roles: frozenset[Role] | set[Role]) -> str:
    return " ".join(sorted(r.value for r in roles))


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().replace("-", "").lower().encode()).hexdigest()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def _verify_password(stored: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_HASHER.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return False


def lock_seconds(failures: int) -> int:
    """Backoff: 30 s after the 5th failure, doubling with each further one, at most an hour."""
    if failures < LOCK_AFTER:
        return 0
    return int(min(LOCK_MAX_SECONDS, LOCK_BASE_SECONDS * 2 ** (failures - LOCK_AFTER)))


async def ensure_tenant(session: AsyncSession, tenant_id: str, name: str) -> None:
    if await repository.get_tenant(session, tenant_id) is None:
        await repository.add(session, Tenant(id=tenant_id, name=name, created_at=datetime.now(UTC)))


async def create_user(
    session: AsyncSession,
    tenant: str,
    username: str,
    password: str,
    roles: frozenset[Role],
    secrets_: Secrets,
    *,
    with_totp: bool | None = None,
) -> tuple[User, Enrolment | None]:
    if len(password) < MIN_PASSWORD:
        raise ProblemError(f"Passwords have at least {MIN_PASSWORD} characters.", status=422, code="weak-password")
    if await repository.get_tenant(session, tenant) is None:
        raise ProblemError("No such tenant.", status=422, code="unknown-tenant")
    if await repository.find_user(session, tenant, username) is not None:
        raise Conflict("This username is taken in this tenant.")
    user = User(
        id=str(uuid.uuid4()),
        tenant=tenant,
        username=username,
        password_hash=await hash_password(password),
        roles=format_roles(roles),
        totp_secret=None,
        totp_last_step=None,
        failed_logins=0,
        locked_until=None,
        disabled=False,
        created_at=datetime.now(UTC),
    )
    await repository.add(session, user)
    enrolment = None
    if with_totp or (with_totp is None and roles & SECOND_FACTOR_ROLES):
        enrolment = await enrol_totp(session, user, secrets_)
    return user, enrolment


async def enrol_totp(session: AsyncSession, user: User, secrets_: Secrets) -> Enrolment:
    """A new TOTP secret (stored sealed) and new recovery codes (the old ones stop working)."""
    secret = pyotp.random_base32(length=32)
    await repository.set_totp(session, user.id, secrets_.seal(secret, purpose=TOTP, owner=user.id))
    codes = [secrets.token_hex(8) for _ in range(RECOVERY_CODES)]
    await repository.replace_recovery_codes(session, user.id, [_hash_code(c) for c in codes])
    uri = pyotp.TOTP(secret, interval=TOTP_STEP).provisioning_uri(name=f"{user.username}@{user.tenant}", issuer_name=ISSUER_NAME)
    return Enrolment(secret, uri, codes)


async def _check_totp(session: AsyncSession, user: User, code: str, secrets_: Secrets) -> str | None:
    """None if ``code`` is a valid TOTP code not used before (or an unused recovery code),
    else the reason it is not (for the audit trail)."""
    code = code.strip()
    if not code:
        return "second-factor-missing"
    if user.totp_secret is None:
        return "totp-not-enrolled"
    if len(code) == 6 and code.isascii() and code.isdigit():
        try:
            secret = secrets_.open(user.totp_secret, purpose=TOTP, owner=user.id)
        except DecryptionError:
            logger.error("a TOTP secret does not open with the configured key", extra={"event": "totp-secret-unreadable"})
            return "totp-unreadable"
        totp = pyotp.TOTP(secret, interval=TOTP_STEP)
        now_step = int(time.time()) // TOTP_STEP
        for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1):
            if secrets.compare_digest(totp.at(step * TOTP_STEP), code):
                if secrets_.needs_resealing(user.totp_secret):  # stored before sealing, or under the previous key
                    await repository.set_totp_secret(session, user.id, secrets_.seal(secret, purpose=TOTP, owner=user.id))
                return None if await repository.claim_totp_step(session, user.id, step) else "totp-reused"
        return "totp-wrong"
    if await repository.use_recovery_code(session, user.id, _hash_code(code), datetime.now(UTC)):
        return None
    return "recovery-code-wrong"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a person typed (or their authenticator produced) on the sign-in form."""

    tenant: str
    username: str
    password: str
    code: str = ""  # a TOTP code or a recovery code
    webauthn: str = ""  # a WebAuthn assertion (JSON), in place of the code


class SignInRefused(Exception):
    """A refused sign-in: the problem the person sees (which never says what failed), and
    what the audit trail keeps: the event, a reason code, and the account if it exists."""

    def __init__(self, problem: ProblemError, event: str, reason: str, user: User | None, details: dict[str, str | int] | None = None):
        super().__init__(reason)
        self.problem, self.event, self.reason, self.user, self.details = problem, event, reason, user, details or {}


async def sign_in(write_sessions: async_sessionmaker[AsyncSession], secrets_: Secrets, typed: Credentials, rp: RelyingParty) -> SignIn:
    """Password, then the second factor when enrolled (mandatory for some roles): a TOTP
    or recovery code, or a WebAuthn assertion.

    Runs in its own transaction, committed even when the sign-in fails: failures
    count towards the lockout, and a used TOTP step, recovery code, WebAuthn challenge
    or signature counter stays used whatever the request does next. The problem shown
    never says which part failed; :class:`SignInRefused` tells the audit trail.

    One sign-in per account at a time (its row locked from the first read; on SQLite,
    ``write_sessions`` hold the write lock from the start): guesses sent at once are
    checked one after another, each seeing the failures and the lock the ones before
    it left, so no number of them gets more than LOCK_AFTER passwords checked."""
    async with session_scope(write_sessions) as session:
        outcome = await _sign_in(session, secrets_, typed, rp)
    if isinstance(outcome, SignInRefused):
        raise outcome
    return outcome


def _failed() -> LoginFailed:
    return LoginFailed("Unknown user, wrong password or wrong code.")


async def _sign_in(session: AsyncSession, secrets_: Secrets, typed: Credentials, rp: RelyingParty) -> SignIn | SignInRefused:
    user = await repository.find_user_to_sign_in(session, typed.tenant, typed.username)
    if user is None:
        await _verify_password(_DUMMY_HASH, typed.password)  # same time as a real check
        return SignInRefused(_failed(), "signin.failure", "unknown-user", None)
    now = datetime.now(UTC)
    if user.locked_until is not None and _aware(user.locked_until) > now:
        locked = AccountLocked("Too many failed sign-ins; try again later.", headers={"retry-after": str(LOCK_BASE_SECONDS)})
        return SignInRefused(locked, "signin.failure", "locked", user)
    password_ok = await _verify_password(user.password_hash, typed.password)
    keys = await webauthn.count_of(session, user.id)
    roles = parse_roles(user.roles)
    needs_factor = bool(roles & SECOND_FACTOR_ROLES) or user.totp_secret is not None or keys > 0
    factor, factor_problem = None, None
    if password_ok and not user.disabled and needs_factor:
        factor, factor_problem = await _second_factor(session, user, typed, secrets_, rp, keys)
    if user.disabled or not password_ok or factor_problem is not None:
        failures = user.failed_logins + 1
        seconds = lock_seconds(failures)
        await repository.record_failure(session, user.id, failures, now + timedelta(seconds=seconds) if seconds else None)
        details: dict[str, str | int] = {"failures": failures}
        if seconds:
            details["locked_seconds"] = seconds
        if user.disabled:
            return SignInRefused(_failed(), "signin.failure", "disabled", user, details)
        if not password_ok:
            return SignInRefused(_failed(), "signin.failure", "bad-password", user, details)
        assert factor_problem is not None
        if user.totp_secret is None and keys == 0:
            problem: ProblemError = SecondFactorRequired(
                "This account must enrol a second factor before it can sign in; ask an administrator."
            )
            return SignInRefused(problem, "signin.failure", "second-factor-not-enrolled", user, details)
        return SignInRefused(_failed(), "signin.mfa.failure", factor_problem, user, details | {"factor": _factor_of(typed)})
    await repository.record_success(session, user.id)
    return SignIn(user, factor is not None, factor or "none")


def _factor_of(typed: Credentials) -> str:
    if typed.webauthn:
        return "webauthn"
    code = typed.code.strip()
    return "totp" if len(code) == 6 and code.isascii() and code.isdigit() else "recovery-code" if code else "none"


async def _second_factor(
    session: AsyncSession, user: User, typed: Credentials, secrets_: Secrets, rp: RelyingParty, keys: int
) -> tuple[str | None, str | None]:
    """(the factor that passed, or None; the reason it did not, or None)."""
    if typed.webauthn:
        if keys == 0:
            return None, "webauthn-not-enrolled"
        try:
            await webauthn_service.check_assertion(session, rp, user, typed.webauthn)
        except webauthn_service.WebAuthnRefused as refused:
            return None, refused.reason
        return "webauthn", None
    problem = await _check_totp(session, user, typed.code, secrets_)
    return (_factor_of(typed), None) if problem is None else (None, problem)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
