"""Discovery documents: OAuth 2.0 / OpenID provider metadata and SMART configuration."""

from __future__ import annotations

from typing import Any

from carevault_api.oauth.client_auth import ASSERTION_ALGORITHMS
from carevault_common.jose import ACCESS_TOKEN_ALGORITHMS, DPOP_ALGORITHMS

GRANTS = ["authorization_code", "client_credentials", "refresh_token"]
SCOPES = ["openid", "fhirUser", "offline_access", "launch/patient", "patient/*.cruds", "user/*.cruds", "system/*.cruds"]


def authorization_server(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/oauth2/jwks",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANTS,
        "subject_types_supported": ["public"],
        "scopes_supported": SCOPES,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        "access_token_signing_alg_values_supported": list(ACCESS_TOKEN_ALGORITHMS),
        "authorization_response_iss_parameter_supported": True,
    }


def smart_configuration(issuer: str) -> dict[str, Any]:
    base = authorization_server(issuer)
    keep = (
        "issuer",
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "scopes_supported",
        "response_types_supported",
        "code_challenge_methods_supported",
        "dpop_signing_alg_values_supported",
    )
    return {k: base[k] for k in keep} | {
        "capabilities": [
            "launch-standalone",
            "client-public",
            "client-confidential-asymmetric",
            "context-standalone-patient",
            "permission-offline",
            "permission-patient",
            "permission-user",
            "permission-v2",
        ],
    }
