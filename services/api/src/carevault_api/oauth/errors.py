"""OAuth2 errors: problem details that also carry RFC 6749 ``error`` and
``error_description``, so any OAuth2 client library understands them."""

from __future__ import annotations

from carevault_common.errors import ProblemError


class OAuthError(ProblemError):
    status, code, title = 400, "oauth-error", "OAuth2 request refused"

    def __init__(
        self, error: str, description: str, *, status: int | None = None, headers: dict[str, str] | None = None, reason: str | None = None
    ) -> None:
        super().__init__(
            description,
            status=status or (401 if error == "invalid_client" else 400),
            code=f"oauth-{error.replace('_', '-')}",
            headers=headers,
            extensions={"error": error, "error_description": description},
        )
        self.error = error
        # A finer code than ``error`` for the audit trail (``assertion-replayed``, ``pkce-failed``...).
        self.reason = reason or error.replace("_", "-")
