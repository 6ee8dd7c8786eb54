"""OAuth2 endpoints (public, through the gateway): discovery, JWKS, authorize,
token, revocation, introspection. Thin: parse the form, call the service."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from carevault_api.accounts.service import Credentials, SignInRefused, sign_in
from carevault_api.deps import SessionDep
from carevault_api.oauth import events as signin_events
from carevault_api.oauth import metadata
from carevault_api.oauth.errors import OAuthError
from carevault_api.oauth.pages import error_page, sign_in_page
from carevault_api.oauth.service import AuthorizeError, OAuthService, TokenTrace
from carevault_api.webauthn import service as webauthn_service
from carevault_common.app import json_response

router = APIRouter()
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
MAX_FORM_BYTES = 64 * 1024


def _oauth(request: Request) -> OAuthService:
    service: OAuthService = request.app.state.oauth
    return service


async def _form(request: Request) -> dict[str, str]:
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "The form is too large.")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request", "Send application/x-www-form-urlencoded.")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "The form is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "The form is not valid.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:  # RFC 6749 §3.1: parameters must not be repeated
            raise OAuthError("invalid_request", f"Parameter {key} is repeated.")
        form[key] = value
    return form


@router.get("/.well-known/openid-configuration")
@router.get("/.well-known/oauth-authorization-server")
async def discovery(request: Request) -> Response:
    return json_response(metadata.authorization_server(_oauth(request).settings.issuer))


@router.get("/fhir/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    return json_response(metadata.smart_configuration(_oauth(request).settings.issuer))


@router.get("/oauth2/jwks")
async def jwks(request: Request) -> Response:
    oauth = _oauth(request)
    await oauth.keys.maybe_reload()
    response = json_response(oauth.keys.jwks())
    response.headers["cache-control"] = "max-age=60"
    return response


@router.post("/oauth2/token")
async def token(request: Request) -> Response:
    trace = TokenTrace()
    try:
        body = await _oauth(request).token(await _form(request), request.headers.get("dpop"), trace)
    except OAuthError as exc:
        await signin_events.token_refused(request, trace, exc)
        raise
    # Stored before the token leaves: an issued token is never unrecorded.
    await signin_events.token_issued(request, trace)
    return Response(_dumps(body), media_type="application/json", headers=NO_STORE)


@router.post("/oauth2/revoke")
async def revoke(request: Request) -> Response:
    trace = TokenTrace()
    try:
        await _oauth(request).revoke(await _form(request), trace)
    except OAuthError as exc:
        await signin_events.token_refused(request, trace, exc)
        raise
    await signin_events.token_revoked(request, trace)
    return Response(status_code=200, headers=NO_STORE)


@router.post("/oauth2/introspect")
async def introspect(request: Request) -> Response:
    body = await _oauth(request).introspect(await _form(request))
    return Response(_dumps(body), media_type="application/json", headers=NO_STORE)


def _banner(request: Request) -> str:
    """The environment to name at the top of pages, if this installation shows a banner."""
    settings = request.app.state.settings
    return settings.environment.value if settings.environment_banner else ""


def _redirect_error(error: AuthorizeError, issuer: str) -> Response:
    query = {"error": error.error, "error_description": error.description, "iss": issuer}
    if error.state:
        query["state"] = error.state
    return RedirectResponse(f"{error.redirect_uri}?{urlencode(query)}", status_code=302, headers=NO_STORE)


@router.get("/oauth2/authorize")
async def authorize_form(request: Request, session: SessionDep) -> Response:
    oauth = _oauth(request)
    params = dict(request.query_params)
    try:
        checked = await oauth.check_authorization_request(session, params)
    except OAuthError as exc:
        return HTMLResponse(error_page(exc.detail, banner=_banner(request)), status_code=400, headers=NO_STORE)
    except AuthorizeError as exc:
        return _redirect_error(exc, oauth.settings.issuer)
    return HTMLResponse(sign_in_page(checked, params, banner=_banner(request)), headers=NO_STORE)


@router.post("/oauth2/authorize")
async def authorize_submit(request: Request, session: SessionDep) -> Response:
    oauth = _oauth(request)
    form = await _form(request)
    try:
        checked = await oauth.check_authorization_request(session, form)
        if form.get("decision") != "allow":
            raise AuthorizeError(checked.redirect_uri, "access_denied", "The user denied the request.", checked.state)
        typed = Credentials(
            form.get("tenant", ""), form.get("username", ""), form.get("password", ""), form.get("otp", ""), form.get("webauthn", "")
        )
        # This session has only read so far: end its transaction, giving its connection
        # back, because the sign-in takes another one. Holding one while waiting for a
        # second, as many sign-ins as the pool has connections would wait on each other
        # until the pool timed out (measured: 15 at once against a pool of 8).
        await session.commit()
        try:
            signed_in = await sign_in(request.app.state.write_sessions, request.app.state.secrets, typed, request.app.state.relying_party)
        except SignInRefused as refused:
            await signin_events.refused(request, session, refused, typed.tenant, checked.client.client_id)
            problem = refused.problem
            return HTMLResponse(
                sign_in_page(checked, form, problem.detail, banner=_banner(request)),
                status_code=problem.status,
                headers=NO_STORE | problem.headers,
            )
        # In this session's transaction, with the code: if the event cannot be stored, no code is.
        await signin_events.succeeded(request, session, signed_in, checked.client.client_id)
        code = await oauth.issue_code(session, checked, signed_in.user, signed_in.second_factor)
    except OAuthError as exc:
        return HTMLResponse(error_page(exc.detail, banner=_banner(request)), status_code=400, headers=NO_STORE)
    except AuthorizeError as exc:
        return _redirect_error(exc, oauth.settings.issuer)
    query = {"code": code, "iss": oauth.settings.issuer} | ({"state": checked.state} if checked.state else {})
    return RedirectResponse(f"{checked.redirect_uri}?{urlencode(query)}", status_code=302, headers=NO_STORE)


@router.post("/oauth2/webauthn/options")
async def webauthn_signin_options(request: Request, session: SessionDep) -> Response:
    """Request options for a WebAuthn assertion, sent with the sign-in form in place of a
    TOTP code (field ``webauthn``). Bound to no account: credentials are discoverable."""
    options = await webauthn_service.signin_options(session, request.app.state.relying_party)
    return Response(_dumps(options), media_type="application/json", headers=NO_STORE)


def _dumps(body: object) -> bytes:
    import orjson

    return orjson.dumps(body)
