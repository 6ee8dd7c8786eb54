"""The sign-in and consent screen of ``/oauth2/authorize``: one small HTML form,
no script, no external resource (the gateway's CSP allows none)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from carevault_api.oauth.service import AuthorizationRequest

CARRIED = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method", "aud", "dpop_jkt")


def banner_html(environment: str) -> str:
    """The notice at the top of every page outside production (``""``: none)."""
    if not environment:
        return ""
    return (
        f'<p role="note"><mark><strong>{escape(environment.upper())}: a test installation, not for real patient data.</strong></mark></p>\n'
    )


def sign_in_page(request: AuthorizationRequest, params: Mapping[str, str], message: str = "", *, banner: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{k}" value="{escape(params[k])}">' for k in CARRIED if k in params)
    scopes = "".join(f"<li>{escape(str(s))}</li>" for s in request.scopes)
    notice = f'<p role="alert"><strong>{escape(message)}</strong></p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to carevault</title></head>
<body>
{banner_html(banner)}<h1>Sign in to carevault</h1>
<p><strong>{escape(request.client.name)}</strong> asks to act on your behalf with these permissions:</p>
<ul>{scopes}</ul>
{notice}
<form method="post" action="/oauth2/authorize">
{hidden}
<p><label>Organisation <input name="tenant" required autocomplete="organization"></label></p>
<p><label>Username <input name="username" required autocomplete="username"></label></p>
<p><label>Password <input name="password" type="password" required autocomplete="current-password"></label></p>
<p><label>Authenticator code or recovery code <input name="otp" autocomplete="one-time-code"></label></p>
<input type="hidden" name="webauthn" value="">
<p><button name="decision" value="allow">Sign in and allow</button> <button name="decision" value="deny">Deny</button></p>
</form>
</body></html>"""


def error_page(description: str, *, banner: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>carevault: request refused</title></head>
<body>{banner_html(banner)}<h1>This sign-in request was refused</h1><p>{escape(description)}</p></body></html>"""
