"""``/admin/*``: users, roles, patient links, OAuth2 clients. Thin: each route
names its permission (second factor required: invariant 6) and calls the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

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
async def create_user(body: NewUser, manage: ManageUsers, assign: AssignRoles, session: SessionDep, secrets: SecretsDep) -> UserOut:
    return await admin.add_user(session, manage, assign, body, secrets)


@router.get("/users")
async def list_users(manage: ManageUsers, session: SessionDep) -> list[UserOut]:
    return await admin.list_users(session, manage)


@router.put("/users/{user_id}/roles")
async def set_roles(user_id: str, body: RolesUpdate, assign: AssignRoles, session: SessionDep) -> UserOut:
    return await admin.set_roles(session, assign, user_id, body.roles)


@router.post("/users/{user_id}/totp")
async def reset_totp(user_id: str, manage: ManageUsers, session: SessionDep, secrets: SecretsDep) -> UserOut:
    return await admin.reset_totp(session, manage, user_id, secrets)


@router.post("/users/{user_id}/patients", status_code=204)
async def link_patient(user_id: str, body: PatientLinkIn, manage: ManageUsers, session: SessionDep) -> Response:
    await admin.link_patient(session, manage, user_id, body)
    return Response(status_code=204)


@router.post("/clients", status_code=201)
async def create_client(body: NewClient, manage: ManageClients, session: SessionDep, request: Request) -> ClientOut:
    private_networks = request.app.state.settings.jwks_uri_private_networks
    return await admin.add_client(session, manage, body, private_networks=private_networks)


@router.get("/clients")
async def list_clients(manage: ManageClients, session: SessionDep) -> list[ClientOut]:
    return await admin.list_clients(session, manage)


@router.post("/clients/{client_id}/disable", status_code=204)
async def disable_client(client_id: str, manage: ManageClients, session: SessionDep) -> Response:
    await admin.disable_client(session, manage, client_id)
    return Response(status_code=204)
