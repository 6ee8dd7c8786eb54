"""``/admin/*``: users, roles, patient links, OAuth2 clients. Thin: each route
names its permission (second factor required: invariant 6), calls the service,
and records the act in the audit trail before answering: the session commits
after the route returns, so an act whose event cannot be stored is rolled back
(503, fail closed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from carevault_api import audit
from carevault_api.accounts import admin
from carevault_api.accounts.schemas import ClientOut, NewClient, NewUser, PatientLinkIn, RolesUpdate, UserOut
from carevault_api.authorization.matrix import Permission
from carevault_api.authorization.service import Grant, require
from carevault_api.deps import SecretsDep, SessionDep

router = APIRouter(prefix="/admin")

ManageUsers = Annotated[Grant, Depends(require(Permission.USERS_MANAGE))]
AssignRoles = Annotated[Grant, Depends(require(Permission.ROLES_ASSIGN))]
ManageClients = Annotated[Grant, Depends(require(Permission.CLIENTS_MANAGE))]


@router.post("/users", status_code=201)
async def create_user(
    body: NewUser, manage: ManageUsers, assign: AssignRoles, session: SessionDep, secrets: SecretsDep, request: Request
) -> UserOut:
    created = await admin.add_user(session, manage, assign, body, secrets)
    details: dict[str, str | bool | list[str]] = {
        "target_user": created.id,
        "target_tenant": created.tenant,
        "roles": created.roles,
        "totp_enrolled": created.totp_enrolled,
    }
    await audit.record(request, "admin.user.create", outcome=201, session=session, principal=manage.principal, details=details)
    return created


@router.get("/users")
async def list_users(manage: ManageUsers, session: SessionDep) -> list[UserOut]:
    return await admin.list_users(session, manage)


@router.put("/users/{user_id}/roles")
async def set_roles(user_id: str, body: RolesUpdate, assign: AssignRoles, session: SessionDep, request: Request) -> UserOut:
    before, updated = await admin.set_roles(session, assign, user_id, body.roles)
    added, removed = sorted(set(updated.roles) - before), sorted(before - set(updated.roles))
    target = {"target_user": updated.id, "target_tenant": updated.tenant}
    if added:
        await audit.record(
            request, "admin.role.grant", outcome=200, session=session, principal=assign.principal, details=target | {"roles": added}
        )
    if removed:
        await audit.record(
            request, "admin.role.revoke", outcome=200, session=session, principal=assign.principal, details=target | {"roles": removed}
        )
    if not added and not removed:
        await audit.record(
            request, "admin.user.update", outcome=200, session=session, principal=assign.principal, details=target | {"roles": "unchanged"}
        )
    return updated


@router.post("/users/{user_id}/totp")
async def reset_totp(user_id: str, manage: ManageUsers, session: SessionDep, secrets: SecretsDep, request: Request) -> UserOut:
    updated = await admin.reset_totp(session, manage, user_id, secrets)
    details = {"target_user": updated.id, "target_tenant": updated.tenant, "factor": "totp"}
    await audit.record(request, "admin.mfa.reset", outcome=200, session=session, principal=manage.principal, details=details)
    return updated


@router.post("/users/{user_id}/patients", status_code=204)
async def link_patient(user_id: str, body: PatientLinkIn, manage: ManageUsers, session: SessionDep, request: Request) -> Response:
    user = await admin.link_patient(session, manage, user_id, body)
    await audit.record(
        request,
        "admin.user.patient-link",
        outcome=204,
        session=session,
        principal=manage.principal,
        patient_id=body.patient_id,
        details={"target_user": user.id, "target_tenant": user.tenant, "relation": body.relation},
    )
    return Response(status_code=204)


@router.post("/clients", status_code=201)
async def create_client(body: NewClient, manage: ManageClients, session: SessionDep, request: Request) -> ClientOut:
    private_networks = request.app.state.settings.jwks_uri_private_networks
    created = await admin.add_client(session, manage, body, private_networks=private_networks)
    details = {"target_client": created.client_id, "target_tenant": created.tenant, "kind": created.kind, "scope": created.scopes}
    await audit.record(request, "admin.client.create", outcome=201, session=session, principal=manage.principal, details=details)
    return created


@router.get("/clients")
async def list_clients(manage: ManageClients, session: SessionDep) -> list[ClientOut]:
    return await admin.list_clients(session, manage)


@router.post("/clients/{client_id}/disable", status_code=204)
async def disable_client(client_id: str, manage: ManageClients, session: SessionDep, request: Request) -> Response:
    tenant = await admin.disable_client(session, manage, client_id)
    details = {"target_client": client_id, "target_tenant": tenant}
    await audit.record(request, "admin.client.disable", outcome=204, session=session, principal=manage.principal, details=details)
    return Response(status_code=204)
