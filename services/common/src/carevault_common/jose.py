"""Access tokens and DPoP proofs (RFC 9449), checked the same way by the gateway
and by api (zero trust: both verify).

joserfc does the JOSE work; every verification here names its algorithms, so a
token signed with ``none``, an HMAC algorithm or anything unlisted is refused
before any key is looked at, and a public key is never used as an HMAC secret.

Two memos keep this off the hot path without weakening it:

- :class:`VerifiedTokens` remembers that the exact bytes of an access token
  verified under a key id. A hit is honoured only while that key is still in
  the key set passed in and the issuer is the same; the time claims (``exp``,
  ``iat``, ``nbf``) are checked again on every use. An entry lives no longer
  than its token.
- DPoP proofs of one client share their protected header (``typ``, ``alg``,
  ``jwk``): what is derived from it alone (the imported public key, the
  algorithm, the thumbprint) is parsed and checked once per distinct header.
  The signature, the claims and the ``jti`` of every proof are checked every
  time.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey, import_key

from carevault_common.errors import Unauthorized

#: Algorithms of access tokens signed by api.
ACCESS_TOKEN_ALGORITHMS = ("ES256", "EdDSA")
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
#: Algorithms a client may sign a DPoP proof with (asymmetric only).
DPOP_ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
DPOP_TYPE = "dpop+jwt"
#: A DPoP proof is accepted this many seconds around its iat.
DPOP_MAX_AGE_SECONDS = 60
CLOCK_SKEW_SECONDS = 5


class InvalidToken(Unauthorized):
    code, title = "invalid-token", "Invalid access token"

    def __init__(self, detail: str = "The access token is not valid.", *, scheme: str = "Bearer") -> None:
        super().__init__(detail, headers={"www-authenticate": f'{scheme} realm="carevault", error="invalid_token"'})


class InvalidDpopProof(Unauthorized):
    code, title = "invalid-dpop-proof", "Invalid DPoP proof"

    def __init__(self, detail: str = "The DPoP proof is not valid.") -> None:
        super().__init__(detail, headers={"www-authenticate": 'DPoP realm="carevault", error="invalid_dpop_proof"'})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token_hash(token: str) -> str:
    """The ``ath`` of a DPoP proof: base64url(SHA-256(access token))."""
    return b64url(hashlib.sha256(token.encode()).digest())


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK."""
    return str(import_key(jwk).thumbprint())


def unverified_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, parsed but NOT verified."""
    try:
        return dict(jws.extract_compact(token.encode()).protected)
    except (JoseError, ValueError, UnicodeError):
        raise InvalidToken() from None


def token_key_id(token: str) -> str | None:
    kid = unverified_header(token).get("kid")
    return kid if isinstance(kid, str) else None


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: dict[str, Any]
    kid: str
    issuer: str
    exp: float


class VerifiedTokens:
    """Access tokens whose signature was verified (see the module docstring).

    Bounded: expired entries are dropped when it fills, then the whole memo if
    it is still full (the next uses verify again)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, _Verified] = {}

    def get(self, token: str, keys: KeySet, issuer: str) -> dict[str, Any] | None:
        entry = self._entries.get(token)
        if entry is None or entry.issuer != issuer or not any(k.kid == entry.kid for k in keys.keys):
            return None
        return entry.claims

    def put(self, token: str, claims: dict[str, Any], kid: str, issuer: str) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.time()
            self._entries = {t: e for t, e in self._entries.items() if e.exp > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[token] = _Verified(claims, kid, issuer, float(claims["exp"]))

    def __len__(self) -> int:
        return len(self._entries)


def _check_times(claims: dict[str, Any], moment: float, scheme: str) -> None:
    exp, iat = claims["exp"], claims["iat"]
    if exp <= moment - CLOCK_SKEW_SECONDS or iat > moment + CLOCK_SKEW_SECONDS:
        raise InvalidToken("The access token has expired.", scheme=scheme)
    nbf = claims.get("nbf")
    if isinstance(nbf, int) and nbf > moment + CLOCK_SKEW_SECONDS:
        raise InvalidToken(scheme=scheme)


def verify_access_token(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    now: float | None = None,
    scheme: str = "Bearer",
    verified: VerifiedTokens | None = None,
) -> dict[str, Any]:
    """Claims of an access token signed by api, or :class:`InvalidToken`.

    Checks, in order: the header names a pinned algorithm, the ``at+jwt`` type
    and a known key id; the signature; ``iss``, ``exp``, ``iat`` and ``nbf``.
    With ``verified``, a token already verified under a key still in ``keys``
    skips the header and signature checks (never the time checks). The claims
    returned are shared with the memo: do not modify them."""
    moment = time.time() if now is None else now
    if verified is not None:
        known = verified.get(token, keys, issuer)
        if known is not None:
            _check_times(known, moment, scheme)
            return known
    header = unverified_header(token)
    if header.get("alg") not in ACCESS_TOKEN_ALGORITHMS or header.get("typ") != ACCESS_TOKEN_TYPE:
        raise InvalidToken(scheme=scheme)
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in {k.kid for k in keys.keys}:
        raise InvalidToken(scheme=scheme)
    try:
        decoded = jwt.decode(token, keys, algorithms=list(ACCESS_TOKEN_ALGORITHMS))
    except (JoseError, ValueError):
        raise InvalidToken(scheme=scheme) from None
    claims = dict(decoded.claims)
    exp, iat = claims.get("exp"), claims.get("iat")
    if claims.get("iss") != issuer or not isinstance(exp, int) or not isinstance(iat, int):
        raise InvalidToken(scheme=scheme)
    _check_times(claims, moment, scheme)
    if verified is not None:
        verified.put(token, claims, kid, issuer)
    return claims


_DEFAULT_PORTS = {"https": 443, "http": 80}


def normalise_htu(url: str, *, path_decoded: bool = False) -> str:
    """The URL a DPoP proof is compared on: scheme and host in lower case without the
    scheme's default port, and the path percent-decoded; no query, no fragment.

    RFC 9449 §4.3 asks for RFC 3986 normalisation before the comparison. Servers here
    see a request's path decoded (uvicorn), and the mesh re-encodes it on the way to
    api; so the claim's path is decoded as the server decodes one: a proof for
    ``/Patient/1/%24everything`` (an app encoding each segment) matches that request.
    ``path_decoded``: ``url`` is the request's own URL, its path decoded already."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    netloc = host if parts.port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{parts.port}"
    path = parts.path if path_decoded else unquote(parts.path)
    return urlunsplit((scheme, netloc, path or "/", "", ""))


@dataclass(frozen=True, slots=True)
class DpopProof:
    jkt: str
    jti: str
    iat: int


@dataclass(frozen=True, slots=True)
class _ProofHeader:
    algorithm: Any  # joserfc's JWS algorithm model
    key: ECKey | OKPKey | RSAKey
    jkt: str


_DPOP_REGISTRY = jws.JWSRegistry(algorithms=list(DPOP_ALGORITHMS))
_PROOF_HEADERS: dict[str, _ProofHeader] = {}
_PROOF_HEADERS_MAX = 10_000


def _proof_header(segment: str) -> _ProofHeader:
    """What the protected header of a DPoP proof alone determines, checked once per
    distinct header: type, a pinned asymmetric algorithm, a public JWK of the type
    (and curve) that algorithm needs, no ``crit`` extension, and its thumbprint."""
    cached = _PROOF_HEADERS.get(segment)
    if cached is not None:
        return cached
    try:
        header = orjson.loads(_b64decode(segment))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidDpopProof() from None
    if not isinstance(header, dict):
        raise InvalidDpopProof()
    jwk = header.get("jwk")
    if header.get("typ") != DPOP_TYPE or header.get("alg") not in DPOP_ALGORITHMS or not isinstance(jwk, dict) or "crit" in header:
        raise InvalidDpopProof()
    if any(private in jwk for private in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise InvalidDpopProof("The DPoP proof carries private key material.")
    try:
        key = import_key(jwk)
        if not isinstance(key, (ECKey, OKPKey, RSAKey)):
            raise InvalidDpopProof()
        algorithm = _DPOP_REGISTRY.get_alg(str(header["alg"]))
        algorithm.check_key(key)
        parsed = _ProofHeader(algorithm, key, str(key.thumbprint()))
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidDpopProof() from None
    if len(_PROOF_HEADERS) >= _PROOF_HEADERS_MAX:
        _PROOF_HEADERS.clear()
    _PROOF_HEADERS[segment] = parsed
    return parsed


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_dpop_proof(
    proof: str, *, method: str, url: str, access_token: str | None = None, now: float | None = None, max_age: int = DPOP_MAX_AGE_SECONDS
) -> DpopProof:
    """Check one DPoP proof JWT (RFC 9449 §4.3) except for jti replay, which the
    caller checks against its shared cache with the returned ``jti``. ``url``: the
    request's URL as the server sees it, its path decoded (see :func:`normalise_htu`)."""
    parts = proof.split(".")
    if len(parts) != 3 or not all(parts) or len(proof) > 8192:
        raise InvalidDpopProof()
    header = _proof_header(parts[0])
    try:
        signature = _b64decode(parts[2])
        valid = header.algorithm.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), signature, header.key)
        claims = orjson_loads(_b64decode(parts[1])) if valid else None
    except (JoseError, ValueError, UnicodeError, orjson.JSONDecodeError):
        raise InvalidDpopProof() from None
    if claims is None:
        raise InvalidDpopProof()
    moment = time.time() if now is None else now
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 256 or not isinstance(iat, int):
        raise InvalidDpopProof()
    if claims.get("htm") != method.upper():
        raise InvalidDpopProof("The DPoP proof was made for another method.")
    htu = claims.get("htu")
    try:
        same_url = isinstance(htu, str) and normalise_htu(htu) == normalise_htu(url, path_decoded=True)
    except ValueError:  # not a URL (a port that is not a number...)
        same_url = False
    if not same_url:
        raise InvalidDpopProof("The DPoP proof was made for another URL.")
    if abs(moment - iat) > max_age:
        raise InvalidDpopProof("The DPoP proof is too old or from the future.")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise InvalidDpopProof("The DPoP proof is not bound to this access token.")
    return DpopProof(header.jkt, jti, iat)


def orjson_loads(payload: bytes) -> dict[str, Any]:
    value = orjson.loads(payload)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def check_binding(claims: dict[str, Any], proof: DpopProof | None, scheme: str) -> None:
    """A DPoP-bound token (``cnf.jkt``) needs the DPoP scheme and a proof by that key;
    an unbound token must not be sent with the DPoP scheme."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if jkt is None:
        if scheme != "bearer" or proof is not None:
            raise InvalidToken("This access token is not DPoP-bound.")
        return
    if scheme != "dpop" or proof is None:
        raise InvalidToken("This access token is bound to a key: present it with the DPoP scheme and a proof.", scheme="DPoP")
    if proof.jkt != jkt:
        raise InvalidDpopProof("The DPoP proof was signed by another key than the one the token is bound to.")
