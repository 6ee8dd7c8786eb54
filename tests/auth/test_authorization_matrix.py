"""The authorization matrix, through the gateway: every endpoint x role x own or
other tenant x consent absent, expired, present or revoked gives the allow or
deny documented in docs/security-access.md; zero unexpected allows (and no
unexpected denials either).

The expectations are computed from the permission matrix in code
(``carevault_api.authorization.matrix``, which tests/security/test_permission_matrix_doc.py
keeps equal to the documented table) and the documented rules around it: the
patient reaches their own records (a representative linked by an administrator
too); a grantee role reaches a patient's records only through an active,
unexpired consent, in any tenant; a read or delete by id that names no patient
is looked up in the caller's own tenant; a search of patient data names its
patient; administration needs a second factor (every administrator here has
one) and a reach covering the target's tenant.

One mesh, one sign-in per actor. The consent states are phases every actor
goes through together (absent, then an expired consent, then an active one,
then the active one revoked), and each phase sends every request of every actor
concurrently, in small batches, over one HTTP/1.1 connection pool.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from carevault_api.authorization.matrix import MATRIX, Permission, Reach
from tests.auth.support import (
    Session,
    admin_post,
    admin_session,
    backend_session,
    ensure_tenant,
    make_backend_client,
    make_user,
    totp_now,
    user_session,
)
from tests.auth.test_sign_in import consent_body
from tests.e2e.test_records import observation
from tests.support import RunningMesh, new_patient_key

OWN, OTHER = "demo", "other"
PHASES = ("absent", "expired", "present", "revoked")
ROLES = ("patient", "practitioner", "clinic-client", "tenant-admin", "platform-admin", "hosting-doctor", "auditor")
SECOND_FACTOR = {"tenant-admin", "platform-admin", "hosting-doctor", "auditor"}
USER_SCOPES = {"patient": "patient/*.cruds", "auditor": "user/*.rs"}
BATCH = 8
ALLOWED, DENIED = "allowed", "denied"


@dataclass
class Actor:
    name: str
    role: str  # a role of the matrix ("patient" for the patient and their representative too)
    tenant: str
    session: Session
    subject: str  # user id, or client id for a clinic client
    kind: str  # "user" or "client"
    own_patient: bool = False  # the patient of the records, or their representative
    private_jwk: dict[str, Any] | None = None  # clinic clients: to authenticate at /oauth2/introspect

    def reach(self, permission: Permission) -> Reach:
        return MATRIX[permission][_role(self.role)]


def _role(name: str) -> Any:
    from carevault_api.auth.principal import Role

    return Role(name)


@dataclass
class World:
    """What the requests act on: one patient's records in the own tenant, and targets for administration."""

    mesh: RunningMesh
    patient: Session
    patient_id: str
    key: str
    obs_id: str
    org_id: str
    consent_id: str  # a consent of the patient to the dummy user, read by the others
    revoke_target: str  # a consent of the patient to the dummy user, revoked by whoever may
    dummy_user: str  # a patient-role user of the own tenant: the target of administration
    dummy_client: str  # a clinic client of the own tenant: the target of client administration
    update_targets: dict[str, str] = field(default_factory=dict)  # actor -> an Observation it updates
    delete_targets: dict[tuple[str, str], str] = field(default_factory=dict)  # (actor, phase) -> an Observation it deletes
    consents: dict[str, str] = field(default_factory=dict)  # consent id -> the grantee's tenant


@dataclass(frozen=True)
class Endpoint:
    name: str
    call: Callable[[World, Actor, str], Awaitable[httpx.Response]]
    expect: Callable[[World, Actor, str], bool]
    # "allowed" statuses other than 2xx: a body refused by validation after authorization
    also_allowed: frozenset[int] = frozenset()
    # What an allowed answer may contain, for endpoints that filter (None: not checked).
    content_ok: Callable[[World, Actor, httpx.Response], str | None] | None = None


# -- expectations --------------------------------------------------------------------


def patient_data(action: str, *, by_id_without_hint: bool = False) -> Callable[[World, Actor, str], bool]:
    permission = Permission.PATIENT_DATA_READ if action == "read" else Permission.PATIENT_DATA_WRITE

    def expect(world: World, actor: Actor, phase: str) -> bool:
        if actor.own_patient:
            return True
        if actor.reach(permission) != Reach.CONSENT or phase != "present":
            return False
        # A read or delete by id naming no patient is looked up in the caller's own tenant.
        return actor.tenant == OWN or not by_id_without_hint

    return expect


def never(world: World, actor: Actor, phase: str) -> bool:
    return False


def tenant_reach(permission: Permission, *, target_own_tenant: bool) -> Callable[[World, Actor, str], bool]:
    def expect(world: World, actor: Actor, phase: str) -> bool:
        reach = actor.reach(permission)
        if reach == Reach.PLATFORM:
            return True
        if reach == Reach.TENANT:
            return actor.tenant == OWN or not target_own_tenant
        return False

    return expect


def any_reach(permission: Permission, *, or_own_patient: bool = False) -> Callable[[World, Actor, str], bool]:
    return lambda world, actor, phase: (or_own_patient and actor.own_patient) or actor.reach(permission) != Reach.NONE


def own_patient_only(world: World, actor: Actor, phase: str) -> bool:
    return actor.own_patient


def read_one_consent(world: World, actor: Actor, phase: str) -> bool:
    """The consent of the patient (own tenant) to the dummy user: not the actor's."""
    return actor.own_patient or tenant_reach(Permission.CONSENT_READ, target_own_tenant=True)(world, actor, phase)


def revoke_consent(world: World, actor: Actor, phase: str) -> bool:
    return actor.own_patient or tenant_reach(Permission.CONSENT_MANAGE, target_own_tenant=True)(world, actor, phase)


def admin_both(world: World, actor: Actor, phase: str) -> bool:
    """Creating a user in the own tenant: users.manage and roles.assign both covering it."""
    return all(tenant_reach(p, target_own_tenant=True)(world, actor, phase) for p in (Permission.USERS_MANAGE, Permission.ROLES_ASSIGN))


# -- content checks (filtering endpoints) ----------------------------------------------


def consents_visible(world: World, actor: Actor, response: httpx.Response) -> str | None:
    reach = actor.reach(Permission.CONSENT_READ)
    for entry in response.json().get("entry", []):
        consent = entry["resource"]
        grantee = consent["provision"]["actor"][0]["reference"]["identifier"]["value"]
        tenants = {consent["organization"][0]["identifier"]["value"], world.consents.get(consent["id"], "?")}
        visible = (
            actor.own_patient or grantee == actor.subject or reach == Reach.PLATFORM or (reach == Reach.TENANT and actor.tenant in tenants)
        )
        if not visible:
            return f"sees Consent/{consent['id']} of grantee {grantee}"
    return None


def users_visible(world: World, actor: Actor, response: httpx.Response) -> str | None:
    if actor.reach(Permission.USERS_MANAGE) == Reach.PLATFORM:
        return None
    strangers = [u["username"] for u in response.json() if u["tenant"] != actor.tenant]
    return f"sees users of another tenant: {strangers[:3]}" if strangers else None


def clients_visible(world: World, actor: Actor, response: httpx.Response) -> str | None:
    if actor.reach(Permission.CLIENTS_MANAGE) == Reach.PLATFORM:
        return None
    strangers = [c["client_id"] for c in response.json() if c["tenant"] != actor.tenant]
    return f"sees clients of another tenant: {strangers[:3]}" if strangers else None


def no_foreign_directory(world: World, actor: Actor, response: httpx.Response) -> str | None:
    found = [e["resource"]["id"] for e in response.json().get("entry", [])]
    if actor.tenant != OWN and world.org_id in found:
        return "finds the other tenant's Organization"
    return None


def introspection_active(world: World, actor: Actor, response: httpx.Response) -> str | None:
    active = response.json().get("active")
    if active and actor.tenant != OWN:
        return "introspects a token of another tenant"
    if not active and actor.tenant == OWN:
        return "a token of its own tenant is reported inactive"
    return None


# -- the requests ------------------------------------------------------------------------

_HTTP: dict[str, httpx.AsyncClient] = {}


async def send(world: World, actor: Actor, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = actor.session.headers(method, path) | {"accept": "application/fhir+json"} | kwargs.pop("headers", {})
    return await _HTTP["client"].request(method, path, headers=headers, **kwargs)


def fhir(
    method: str, path: Callable[[World, Actor, str], str], body: Callable[[World, Actor, str], Any] | None = None, **extra: Any
) -> Any:
    async def call(world: World, actor: Actor, phase: str) -> httpx.Response:
        headers = {"x-patient-key": world.key} | extra.get("headers", {})
        if callable(extra.get("hint")):
            headers["x-patient-id"] = extra["hint"](world)
        json = body(world, actor, phase) if body is not None else None
        return await send(world, actor, method, path(world, actor, phase), headers=headers, json=json)

    return call


def updated(world: World, actor: Actor, phase: str) -> dict[str, Any]:
    return observation(world.patient_id) | {"id": world.update_targets[actor.name]}


def transaction(world: World, actor: Actor, phase: str) -> dict[str, Any]:
    entry = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": observation(world.patient_id),
        "request": {"method": "POST", "url": "Observation"},
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}


async def introspect(world: World, actor: Actor, phase: str) -> httpx.Response:
    assert actor.private_jwk is not None
    key = ECKey.import_key(actor.private_jwk)
    now = int(time.time())
    url = world.mesh.layout.gateway_url + "/oauth2/introspect"
    claims = {"iss": actor.subject, "sub": actor.subject, "aud": url, "exp": now + 120, "jti": uuid.uuid4().hex}
    assertion = jwt.encode({"alg": "ES384", "kid": key.kid}, claims, key, algorithms=["ES384"])
    form = {
        "token": world.patient.token,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    return await _HTTP["client"].post("/oauth2/introspect", data=form)


def _obs(world: World, actor: Actor, phase: str) -> str:
    return world.obs_id


READ, WRITE = patient_data("read"), patient_data("write")
ENDPOINTS: tuple[Endpoint, ...] = (
    # patient data (the patient's records, in the own tenant; everyone holds the patient key)
    Endpoint(
        "read Observation/{id} (no hint)",
        fhir("GET", lambda w, a, p: f"/fhir/Observation/{w.obs_id}"),
        patient_data("read", by_id_without_hint=True),
    ),
    Endpoint(
        "vread Observation/{id}/_history/1",
        fhir("GET", lambda w, a, p: f"/fhir/Observation/{w.obs_id}/_history/1"),
        patient_data("read", by_id_without_hint=True),
    ),
    Endpoint(
        "history Observation/{id}/_history",
        fhir("GET", lambda w, a, p: f"/fhir/Observation/{w.obs_id}/_history"),
        patient_data("read", by_id_without_hint=True),
    ),
    Endpoint(
        "read Observation/{id} with X-Patient-Id",
        fhir("GET", lambda w, a, p: f"/fhir/Observation/{w.obs_id}", hint=lambda w: w.patient_id),
        READ,
    ),
    Endpoint("search Observation?subject=", fhir("GET", lambda w, a, p: f"/fhir/Observation?subject=Patient/{w.patient_id}"), READ),
    Endpoint("search Observation?patient=", fhir("GET", lambda w, a, p: f"/fhir/Observation?patient={w.patient_id}"), READ),
    Endpoint("search Observation (no patient)", fhir("GET", lambda w, a, p: "/fhir/Observation?code=http://loinc.org|8867-4"), never),
    Endpoint("read Patient/{id}", fhir("GET", lambda w, a, p: f"/fhir/Patient/{w.patient_id}"), READ),
    Endpoint("search Patient?_id=", fhir("GET", lambda w, a, p: f"/fhir/Patient?_id={w.patient_id}"), READ),
    Endpoint("create Observation", fhir("POST", lambda w, a, p: "/fhir/Observation", lambda w, a, p: observation(w.patient_id)), WRITE),
    Endpoint("update Observation/{id}", fhir("PUT", lambda w, a, p: f"/fhir/Observation/{w.update_targets[a.name]}", updated), WRITE),
    Endpoint(
        "delete Observation/{id} (no hint)",
        fhir("DELETE", lambda w, a, p: f"/fhir/Observation/{w.delete_targets[a.name, p]}"),
        patient_data("write", by_id_without_hint=True),
    ),
    Endpoint("transaction Bundle", fhir("POST", lambda w, a, p: "/fhir", transaction), WRITE),
    Endpoint(
        "Patient/{id}/$rotate-key (invalid body)",
        fhir("POST", lambda w, a, p: f"/fhir/Patient/{w.patient_id}/$rotate-key", lambda w, a, p: {"resourceType": "Parameters"}),
        WRITE,
        also_allowed=frozenset({400, 422}),
    ),
    # directory data (tenant-wide)
    Endpoint(
        "read Organization/{id} (own tenant's)",
        fhir("GET", lambda w, a, p: f"/fhir/Organization/{w.org_id}"),
        tenant_reach(Permission.DIRECTORY_READ, target_own_tenant=True),
    ),
    Endpoint(
        "search Organization?_id=",
        fhir("GET", lambda w, a, p: f"/fhir/Organization?_id={w.org_id}"),
        tenant_reach(Permission.DIRECTORY_READ, target_own_tenant=False),
        content_ok=no_foreign_directory,
    ),
    Endpoint(
        "create Organization",
        fhir("POST", lambda w, a, p: "/fhir/Organization", lambda w, a, p: {"resourceType": "Organization", "name": "x"}),
        tenant_reach(Permission.DIRECTORY_WRITE, target_own_tenant=False),
    ),
    # consents
    Endpoint(
        "grant Consent",
        fhir("POST", lambda w, a, p: "/fhir/Consent", lambda w, a, p: consent_body(w.patient_id, w.dummy_user, "user")),
        own_patient_only,
    ),
    Endpoint(
        "search Consent?patient=",
        fhir("GET", lambda w, a, p: f"/fhir/Consent?patient={w.patient_id}"),
        any_reach(Permission.CONSENT_READ),
        content_ok=consents_visible,
    ),
    Endpoint("read Consent/{id} (not the caller's)", fhir("GET", lambda w, a, p: f"/fhir/Consent/{w.consent_id}"), read_one_consent),
    Endpoint("revoke Consent/{id} (not the caller's)", fhir("DELETE", lambda w, a, p: f"/fhir/Consent/{w.revoke_target}"), revoke_consent),
    # administration (second factor required)
    Endpoint(
        "GET /admin/users", lambda w, a, p: send(w, a, "GET", "/admin/users"), any_reach(Permission.USERS_MANAGE), content_ok=users_visible
    ),
    Endpoint(
        "POST /admin/users (own tenant, weak password)",
        lambda w, a, p: send(
            w,
            a,
            "POST",
            "/admin/users",
            json={"tenant": OWN, "username": f"x-{uuid.uuid4().hex[:8]}", "password": "short", "roles": ["patient"]},
        ),
        admin_both,
        also_allowed=frozenset({422}),
    ),
    Endpoint(
        "PUT /admin/users/{id}/roles",
        lambda w, a, p: send(w, a, "PUT", f"/admin/users/{w.dummy_user}/roles", json={"roles": ["patient"]}),
        tenant_reach(Permission.ROLES_ASSIGN, target_own_tenant=True),
    ),
    Endpoint(
        "POST /admin/users/{id}/totp",
        lambda w, a, p: send(w, a, "POST", f"/admin/users/{w.dummy_user}/totp"),
        tenant_reach(Permission.USERS_MANAGE, target_own_tenant=True),
    ),
    Endpoint(
        "POST /admin/users/{id}/patients",
        lambda w, a, p: send(
            w, a, "POST", f"/admin/users/{w.dummy_user}/patients", json={"patient_id": "not-a-patient", "relation": "representative"}
        ),
        tenant_reach(Permission.USERS_MANAGE, target_own_tenant=True),
    ),
    Endpoint(
        "GET /admin/clients",
        lambda w, a, p: send(w, a, "GET", "/admin/clients"),
        any_reach(Permission.CLIENTS_MANAGE),
        content_ok=clients_visible,
    ),
    Endpoint(
        "POST /admin/clients (own tenant, invalid scopes)",
        lambda w, a, p: send(
            w, a, "POST", "/admin/clients", json={"tenant": OWN, "name": "x", "kind": "backend", "jwks": {"keys": []}, "scopes": "nope"}
        ),
        tenant_reach(Permission.CLIENTS_MANAGE, target_own_tenant=True),
        also_allowed=frozenset({422}),
    ),
    Endpoint(
        "POST /admin/clients/{id}/disable",
        lambda w, a, p: send(w, a, "POST", f"/admin/clients/{w.dummy_client}/disable"),
        tenant_reach(Permission.CLIENTS_MANAGE, target_own_tenant=True),
    ),
    # break-glass (second factor required; the whole workflow: tests/e2e/test_break_glass_api.py)
    Endpoint(
        "GET /break-glass/requests?tenant= (own tenant's)",
        lambda w, a, p: send(w, a, "GET", f"/break-glass/requests?tenant={OWN}"),
        lambda w, a, p: (
            any_reach(Permission.BREAK_GLASS)(w, a, p) or tenant_reach(Permission.BREAK_GLASS_DECIDE, target_own_tenant=True)(w, a, p)
        ),
    ),
    Endpoint(
        "POST /break-glass/requests (own tenant's patient, invalid document)",
        lambda w, a, p: send(
            w,
            a,
            "POST",
            "/break-glass/requests",
            json={
                "tenant": OWN,
                "patient_id": w.patient_id,
                "reason": "a reason long enough",
                "document": {"contentType": "application/pdf", "data": "not base64!"},
            },
        ),
        any_reach(Permission.BREAK_GLASS),
        also_allowed=frozenset({422}),
    ),
    # bulk re-escrow: counts only (export and upload: tests/e2e/test_doctor_key_rotation.py)
    Endpoint(
        "GET /admin/escrow/coverage", lambda w, a, p: send(w, a, "GET", "/admin/escrow/coverage"), any_reach(Permission.ESCROW_MANAGE)
    ),
)
# Clinic software only: token introspection is for backend clients, within their tenant.
INTROSPECTION = Endpoint("POST /oauth2/introspect (the patient's token)", introspect, lambda w, a, p: True, content_ok=introspection_active)


# -- set-up ------------------------------------------------------------------------------


async def _gather(calls: list[Callable[[], Awaitable[Any]]], batch: int = BATCH) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(calls), batch):
        results += await asyncio.gather(*(call() for call in calls[start : start + batch]))
    return results


async def _user_actor(mesh: RunningMesh, role: str, tenant: str) -> Actor:
    user = await make_user(mesh, tenant, [role], totp=role in SECOND_FACTOR)
    otp = totp_now(user["enrolment"]["secret"]) if role in SECOND_FACTOR else ""
    session = await user_session(mesh, tenant, user["username"], user["password"], otp, scope=USER_SCOPES.get(role, "user/*.cruds"))
    return Actor(f"{role}@{tenant}", role, tenant, session, user["id"], "user")


async def _client_actor(mesh: RunningMesh, tenant: str) -> Actor:
    client_id, private = await make_backend_client(mesh, tenant)
    return Actor(
        f"clinic-client@{tenant}",
        "clinic-client",
        tenant,
        await backend_session(mesh, client_id, private),
        client_id,
        "client",
        private_jwk=private,
    )


async def _world(mesh: RunningMesh) -> tuple[World, list[Actor]]:
    await ensure_tenant(mesh, OTHER)
    await admin_session(mesh)
    # the patient, who registers their record, then signs in again (the token carries the patient)
    owner = await make_user(mesh, OWN, ["patient"])
    first = await user_session(mesh, OWN, owner["username"], owner["password"])
    key = new_patient_key()
    created = await first.request("POST", "/fhir/Patient", json={"resourceType": "Patient"}, headers={"x-patient-key": key})
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    patient = await user_session(mesh, OWN, owner["username"], owner["password"])
    assert patient.patient == patient_id
    # a representative, linked by an administrator
    representative = await make_user(mesh, OWN, ["patient"])
    await admin_post(mesh, f"/admin/users/{representative['id']}/patients", {"patient_id": patient_id, "relation": "representative"})
    dummy = await make_user(mesh, OWN, ["patient"])
    dummy_client, _ = await make_backend_client(mesh, OWN)

    async def make(path: str, body: dict[str, Any], session: Session = patient) -> str:
        headers = session.headers("POST", path) | {"accept": "application/fhir+json", "x-patient-key": key}
        resp = await _HTTP["client"].post(path, json=body, headers=headers)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    obs_id = await make("/fhir/Observation", observation(patient_id))
    org_id = await make("/fhir/Organization", {"resourceType": "Organization", "name": "own clinic"}, await admin_session(mesh))
    consent_id = await make("/fhir/Consent", consent_body(patient_id, dummy["id"], "user"))
    revoke_target = await make("/fhir/Consent", consent_body(patient_id, dummy["id"], "user"))
    world = World(mesh, patient, patient_id, key, obs_id, org_id, consent_id, revoke_target, dummy["id"], dummy_client)
    world.consents = {consent_id: OWN, revoke_target: OWN}

    specs: list[Callable[[], Awaitable[Actor]]] = []
    for tenant in (OWN, OTHER):
        for role in ROLES:
            if role == "clinic-client":
                specs.append(lambda tenant=tenant: _client_actor(mesh, tenant))
            else:
                specs.append(lambda role=role, tenant=tenant: _user_actor(mesh, role, tenant))
    actors: list[Actor] = await _gather(specs)
    rep_session = await user_session(mesh, OWN, representative["username"], representative["password"])
    actors += [
        Actor("the patient", "patient", OWN, patient, owner["id"], "user", own_patient=True),
        Actor("their representative", "patient", OWN, rep_session, representative["id"], "user", own_patient=True),
    ]
    targets = await _gather([lambda: make("/fhir/Observation", observation(patient_id)) for _ in range(len(actors) * (1 + len(PHASES)))])
    for actor in actors:
        world.update_targets[actor.name] = targets.pop()
        for phase in PHASES:
            world.delete_targets[actor.name, phase] = targets.pop()
    return world, actors


async def _enter_phase(world: World, actors: list[Actor], phase: str, active: dict[str, str]) -> None:
    """Move every non-owner actor's consent to ``phase`` (absent -> expired -> present -> revoked)."""
    grantees = [a for a in actors if not a.own_patient]

    owner = Actor("the patient", "patient", OWN, world.patient, "", "user", own_patient=True)

    async def grant(actor: Actor, end: str | None) -> None:
        body = consent_body(world.patient_id, actor.subject, actor.kind, end=end)
        resp = await send(world, owner, "POST", "/fhir/Consent", json=body)
        assert resp.status_code == 201, resp.text
        world.consents[resp.json()["id"]] = actor.tenant
        if end is None:
            active[actor.name] = resp.json()["id"]

    async def revoke(actor: Actor) -> None:
        resp = await send(world, owner, "DELETE", f"/fhir/Consent/{active[actor.name]}")
        assert resp.status_code == 204, resp.text

    if phase == "expired":
        ended = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        await _gather([lambda a=a: grant(a, ended) for a in grantees])
    elif phase == "present":
        await _gather([lambda a=a: grant(a, None) for a in grantees])
    elif phase == "revoked":
        await _gather([lambda a=a: revoke(a) for a in grantees])


def _verdict(endpoint: Endpoint, status: int) -> str:
    if 200 <= status < 300 or status in endpoint.also_allowed:
        return ALLOWED
    if status in (401, 403, 404):
        return DENIED
    return f"unexpected status {status}"


async def test_authorization_matrix(mesh: RunningMesh) -> None:
    problems: list[str] = []
    checked = 0
    active: dict[str, str] = {}
    async with httpx.AsyncClient(
        base_url=mesh.layout.gateway_url, verify=mesh.ssl_context(), timeout=60, limits=httpx.Limits(max_connections=BATCH)
    ) as client:
        _HTTP["client"] = client
        try:
            started = time.monotonic()
            world, actors = await _world(mesh)
            print(f"set-up: {len(actors)} actors in {time.monotonic() - started:.1f} s")
            for phase in PHASES:
                await _enter_phase(world, actors, phase, active)
                cases = [(actor, endpoint) for actor in actors for endpoint in ENDPOINTS]
                cases += [(actor, INTROSPECTION) for actor in actors if actor.kind == "client"]

                def run(actor: Actor, endpoint: Endpoint) -> Callable[[], Awaitable[httpx.Response]]:
                    return lambda: endpoint.call(world, actor, phase)

                phase_started = time.monotonic()
                responses = await _gather([run(actor, endpoint) for actor, endpoint in cases])
                print(f"consent {phase}: {len(cases)} requests in {time.monotonic() - phase_started:.1f} s")
                for (actor, endpoint), response in zip(cases, responses, strict=True):
                    checked += 1
                    expected = ALLOWED if endpoint.expect(world, actor, phase) else DENIED
                    got = _verdict(endpoint, response.status_code)
                    where = f"{actor.name} (consent {phase}) {endpoint.name}"
                    if got != expected:
                        problems.append(f"{where}: expected {expected}, got {response.status_code} {response.text[:160]}")
                    elif got == ALLOWED and endpoint.content_ok is not None and (wrong := endpoint.content_ok(world, actor, response)):
                        problems.append(f"{where}: {wrong}")
            # Nothing a refused delete named is gone: the patient still reads it.
            owner = next(a for a in actors if a.name == "the patient")
            refused = [
                world.delete_targets[a.name, p]
                for a in actors
                for p in PHASES
                if not patient_data("write", by_id_without_hint=True)(world, a, p)
            ]
            reads = await _gather(
                [lambda i=i: send(world, owner, "GET", f"/fhir/Observation/{i}", headers={"x-patient-key": world.key}) for i in refused]
            )
            problems += [
                f"Observation/{i} was deleted by someone refused" for i, r in zip(refused, reads, strict=True) if r.status_code != 200
            ]
        finally:
            _HTTP.clear()
    assert checked >= len(actors) * len(ENDPOINTS) * len(PHASES)
    assert not problems, f"{len(problems)} of {checked} cases differ from the documented matrix:\n" + "\n".join(problems)
