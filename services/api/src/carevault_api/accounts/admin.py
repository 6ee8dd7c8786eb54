"""Administration: users, roles, patient links and OAuth2 clients.

Every operation needs its permission in the matrix, a second factor in the
session (invariant 6), and a reach covering the target tenant.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.accounts import repository
from carevault_api.accounts.schemas import ClientOut, EnrolmentOut, NewClient, NewUser, PatientLinkIn, UserOut
from carevault_api.accounts.service import Enrolment, create_user, enrol_totp, format_roles, parse_roles
from carevault_api.auth.principal import Role
from carevault_api.auth.scopes import parse_scopes
from carevault_api.authorization.service import Grant
from carevault_api.models_identity import OAuthClient, User
from carevault_api.oauth import repository as clients
from carevault_api.oauth.jwks_fetch import check_jwks_uri
from carevault_api.secrets import Secrets
from carevault_common.errors import Forbidden, NotFound, UnprocessableEntity

PLATFORM_ONLY_ROLES = frozenset({Role.PLATFORM_ADMIN, Role.HOSTING_DOCTOR})


def _tenant(grant: Grant, requested: str | None) -> str:
    tenant = requested or grant.principal.tenant
    if not grant.covers_tenant(tenant):
        raise Forbidden("Your reach does not cover this tenant.")
    return tenant


def _check_roles(grant: Grant, roles: frozenset[Role]) -> None:
    if roles & PLATFORM_ONLY_ROLES and grant.reach.value != "platform":
        raise Forbidden("Only a platform administrator assigns platform roles.")


def user_out(user: User, enrolment: Enrolment | None = None) -> UserOut:
    return UserOut(
        id=user.id,
        tenant=user.tenant,
        username=user.username,
        roles=sorted(r.value for r in parse_roles(user.roles)),
        totp_enrolled=user.totp_secret is not None or enrolment is not None,
        enrolment=EnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, recovery_codes=enrolment.recovery_codes)
        if enrolment
        else None,
    )


async def add_user(session: AsyncSession, manage: Grant, assign: Grant, body: NewUser, secrets_: Secrets) -> UserOut:
    tenant = _tenant(manage, body.tenant)
    _tenant(assign, tenant)
    roles = frozenset(body.roles)
    _check_roles(assign, roles)
    user, enrolment = await create_user(session, tenant, body.username, body.password, roles, secrets_, with_totp=body.totp)
    return user_out(user, enrolment)


async def _user_in_reach(session: AsyncSession, grant: Grant, user_id: str) -> User:
    user = await repository.get_user(session, user_id)
    if user is None or not grant.covers_tenant(user.tenant):
        raise NotFound("No such user.")
    return user


async def list_users(session: AsyncSession, grant: Grant) -> list[UserOut]:
    tenant = None if grant.reach.value == "platform" else grant.principal.tenant
    return [user_out(u) for u in await repository.list_users(session, tenant)]


async def set_roles(session: AsyncSession, grant: Grant, user_id: str, roles: list[Role]) -> tuple[frozenset[str], UserOut]:
    """(the roles before, the user after)."""
    user = await _user_in_reach(session, grant, user_id)
    wanted = frozenset(roles)
    before = parse_roles(user.roles)
    _check_roles(grant, wanted | before)
    await repository.set_roles(session, user.id, format_roles(wanted))
    await session.refresh(user)
    return frozenset(r.value for r in before), user_out(user)


async def reset_totp(session: AsyncSession, grant: Grant, user_id: str, secrets_: Secrets) -> UserOut:
    user = await _user_in_reach(session, grant, user_id)
    enrolment = await enrol_totp(session, user, secrets_)
    await session.refresh(user)
    return user_out(user, enrolment)


async def link_patient(session: AsyncSession, grant: Grant, user_id: str, body: PatientLinkIn) -> User:
    user = await _user_in_reach(session, grant, user_id)
    if Role.PATIENT not in parse_roles(user.roles):
        raise UnprocessableEntity("Only users with the patient role act for patient records.")
    await repository.link_patient(session, user.id, user.tenant, body.patient_id, body.relation)
    return user


def client_out(client: OAuthClient) -> ClientOut:
    return ClientOut(
        client_id=client.client_id,
        tenant=client.tenant,
        name=client.name,
        kind=client.kind,
        jwks_uri=client.jwks_uri,
        scopes=client.scopes,
        redirect_uris=orjson.loads(client.redirect_uris),
        disabled=client.disabled,
    )


def validate_client(body: NewClient, *, private_networks: bool = False) -> str | None:
    scopes, _, rejected = parse_scopes(body.scopes)
    if rejected or not scopes:
        raise UnprocessableEntity("scopes must be SMART v2 resource scopes.")
    if body.kind == "backend":
        if bool(body.jwks) == bool(body.jwks_uri):
            raise UnprocessableEntity("A backend client registers its public keys: jwks or jwks_uri, one of them.")
        if body.jwks_uri:
            problem = check_jwks_uri(body.jwks_uri, private_networks=private_networks)
            if problem is not None:
                raise UnprocessableEntity(problem + ".")
            return None
        try:
            keys = KeySet.import_key_set(body.jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise UnprocessableEntity("jwks is not a valid JWK set.") from None
        if any(k.is_private for k in keys.keys):
            raise UnprocessableEntity("Register public keys only.")
        return orjson.dumps(body.jwks).decode()
    if not body.redirect_uris:
        raise UnprocessableEntity("An app client registers its redirect URIs.")
    return None


async def add_client(session: AsyncSession, grant: Grant, body: NewClient, *, private_networks: bool = False) -> ClientOut:
    tenant = _tenant(grant, body.tenant)
    jwks = validate_client(body, private_networks=private_networks)
    client = OAuthClient(
        client_id=str(uuid.uuid4()),
        tenant=tenant,
        name=body.name,
        kind=body.kind,
        jwks=jwks,
        jwks_uri=body.jwks_uri if body.kind == "backend" else None,
        redirect_uris=orjson.dumps(body.redirect_uris).decode(),
        scopes=body.scopes,
        roles=Role.CLINIC_CLIENT.value if body.kind == "backend" else "",
        disabled=False,
        created_at=datetime.now(UTC),
    )
    await clients.add(session, client)
    return client_out(client)


async def list_clients(session: AsyncSession, grant: Grant) -> list[ClientOut]:
    tenant = None if grant.reach.value == "platform" else grant.principal.tenant
    return [client_out(c) for c in await clients.list_clients(session, tenant)]


async def disable_client(session: AsyncSession, grant: Grant, client_id: str) -> str:
    """Returns the client's tenant."""
    client = await clients.get_client(session, client_id)
    if client is None or not grant.covers_tenant(client.tenant):
        raise NotFound("No such client.")
    await clients.set_client_disabled(session, client_id, True)
    return client.tenant
