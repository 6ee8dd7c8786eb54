"""Access-token and DPoP checks, and what their memos may and may not skip."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey, import_key

from carevault_common.jose import (
    InvalidDpopProof,
    InvalidToken,
    VerifiedTokens,
    access_token_hash,
    check_binding,
    verify_access_token,
    verify_dpop_proof,
)

ISSUER = "https://carevault.example"
URL = ISSUER + "/fhir/Observation/1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_key(kid: str = "k1") -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def _public(*keys: Any) -> KeySet:
    return KeySet([import_key(k.as_dict(private=False)) for k in keys])


def _token(key: ECKey, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "s", "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex} | overrides
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}, claims, key, algorithms=["ES256"])


def _proof(key: Any, alg: str = "ES256", *, header: dict[str, Any] | None = None, **claims: Any) -> str:
    body = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": URL, "iat": int(time.time())} | claims
    protected = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)} | (header or {})
    return jwt.encode(protected, body, key, algorithms=[alg])


def test_a_valid_token_verifies_and_is_remembered() -> None:
    key = _signing_key()
    keys, memo = _public(key), VerifiedTokens()
    token = _token(key)
    claims = verify_access_token(token, keys, issuer=ISSUER, verified=memo)
    assert claims["sub"] == "s" and len(memo) == 1
    assert verify_access_token(token, keys, issuer=ISSUER, verified=memo) is claims


def test_a_remembered_token_still_expires() -> None:
    key = _signing_key()
    keys, memo = _public(key), VerifiedTokens()
    token = _token(key)
    verify_access_token(token, keys, issuer=ISSUER, verified=memo)
    with pytest.raises(InvalidToken):
        verify_access_token(token, keys, issuer=ISSUER, verified=memo, now=time.time() + 3600)


def test_a_remembered_token_is_refused_once_its_key_is_withdrawn() -> None:
    old, new = _signing_key("old"), _signing_key("new")
    memo = VerifiedTokens()
    token = _token(old)
    verify_access_token(token, _public(old, new), issuer=ISSUER, verified=memo)
    with pytest.raises(InvalidToken):
        verify_access_token(token, _public(new), issuer=ISSUER, verified=memo)


def test_a_remembered_token_is_refused_for_another_issuer() -> None:
    key = _signing_key()
    keys, memo = _public(key), VerifiedTokens()
    token = _token(key)
    verify_access_token(token, keys, issuer=ISSUER, verified=memo)
    with pytest.raises(InvalidToken):
        verify_access_token(token, keys, issuer="https://elsewhere.example", verified=memo)


def test_a_tampered_token_is_not_taken_for_a_remembered_one() -> None:
    key = _signing_key()
    keys, memo = _public(key), VerifiedTokens()
    token = _token(key)
    verify_access_token(token, keys, issuer=ISSUER, verified=memo)
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = f"{header}.{_b64(orjson.dumps(claims | {'sub': 'admin'}))}.{signature}"
    with pytest.raises(InvalidToken):
        verify_access_token(forged, keys, issuer=ISSUER, verified=memo)


@pytest.mark.parametrize("forgery", ["none", "hs256", "unknown-kid", "wrong-typ"])
def test_forged_tokens_are_refused(forgery: str) -> None:
    key = _signing_key()
    keys = _public(key)
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "s", "iat": now, "exp": now + 300}
    if forgery == "none":
        token = f"{_b64(orjson.dumps({'alg': 'none', 'typ': 'at+jwt', 'kid': 'k1'}))}.{_b64(orjson.dumps(claims))}."
    elif forgery == "hs256":
        secret = OctKey.import_key(orjson.dumps(key.as_dict(private=False)))
        token = jwt.encode({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, claims, secret, algorithms=["HS256"])
    elif forgery == "unknown-kid":
        token = _token(_signing_key("k2"))
    else:
        token = jwt.encode({"alg": "ES256", "typ": "JWT", "kid": "k1"}, claims, key, algorithms=["ES256"])
    with pytest.raises(InvalidToken):
        verify_access_token(token, keys, issuer=ISSUER, verified=VerifiedTokens())


def test_the_memo_is_bounded() -> None:
    key = _signing_key()
    keys, memo = _public(key), VerifiedTokens(max_entries=5)
    for _ in range(12):
        verify_access_token(_token(key), keys, issuer=ISSUER, verified=memo)
    assert len(memo) <= 5


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (ECKey.generate_key("P-256"), "ES256"),
        (ECKey.generate_key("P-384"), "ES384"),
        (OKPKey.generate_key("Ed25519"), "EdDSA"),
        (RSAKey.generate_key(2048), "PS256"),
    ],
)
def test_dpop_proofs_of_each_algorithm(key: Any, alg: str) -> None:
    token = "a.b.c"
    proof = verify_dpop_proof(_proof(key, alg, ath=access_token_hash(token)), method="GET", url=URL, access_token=token)
    assert proof.jkt == key.thumbprint()
    # the second proof of the same key goes through the parsed header: still fully checked
    with pytest.raises(InvalidDpopProof):
        verify_dpop_proof(_proof(key, alg, htm="POST"), method="GET", url=URL)


def _flip_signature(proof: str) -> str:
    header, payload, signature = proof.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 1
    return f"{header}.{payload}.{_b64(bytes(raw))}"


def _swap_payload(proof: str, **claims: Any) -> str:
    header, payload, signature = proof.split(".")
    body = orjson.loads(base64.urlsafe_b64decode(payload + "==")) | claims
    return f"{header}.{_b64(orjson.dumps(body))}.{signature}"


def test_dpop_signature_is_checked_every_time() -> None:
    key = ECKey.generate_key("P-256")
    verify_dpop_proof(_proof(key), method="GET", url=URL)  # the header is now parsed and remembered
    with pytest.raises(InvalidDpopProof):
        verify_dpop_proof(_flip_signature(_proof(key)), method="GET", url=URL)
    with pytest.raises(InvalidDpopProof):
        verify_dpop_proof(_swap_payload(_proof(key), htu=ISSUER + "/fhir/Patient"), method="GET", url=ISSUER + "/fhir/Patient")


@pytest.mark.parametrize(
    ("claims", "method", "url"),
    [
        ({"htm": "POST"}, "GET", URL),
        ({"htu": ISSUER + "/fhir/Patient"}, "GET", URL),
        ({"iat": int(time.time()) - 600}, "GET", URL),
        ({"iat": int(time.time()) + 600}, "GET", URL),
        ({"jti": "short"}, "GET", URL),
        ({"ath": "not-the-hash"}, "GET", URL),
    ],
)
def test_dpop_claims_are_checked(claims: dict[str, Any], method: str, url: str) -> None:
    key = ECKey.generate_key("P-256")
    with pytest.raises(InvalidDpopProof):
        verify_dpop_proof(_proof(key, **claims), method=method, url=url, access_token="a.b.c")


def test_the_htu_ignores_query_and_case_of_the_host() -> None:
    key = ECKey.generate_key("P-256")
    verify_dpop_proof(_proof(key, htu="https://CAREVAULT.example/fhir/Observation/1?x=1"), method="get", url=URL)


@pytest.mark.parametrize(
    ("htu", "request_url"),
    [
        # An app that percent-encodes each path segment; the server sees the path decoded.
        (ISSUER + "/fhir/Patient/1/%24everything", ISSUER + "/fhir/Patient/1/$everything"),
        (ISSUER + "/fhir/Patient/1/$everything", ISSUER + "/fhir/Patient/1/$everything"),
        (ISSUER + "/fhir/Observation/%31", URL),
        (ISSUER + ":443/fhir/Observation/1", URL),  # the scheme's default port
    ],
)
def test_the_htu_is_compared_after_rfc3986_normalisation(htu: str, request_url: str) -> None:
    key = ECKey.generate_key("P-256")
    verify_dpop_proof(_proof(key, htu=htu), method="GET", url=request_url)


@pytest.mark.parametrize(
    "htu",
    [
        ISSUER + ":8443/fhir/Observation/1",  # another port
        "http://carevault.example/fhir/Observation/1",  # another scheme
        ISSUER + "/fhir/Observation/%2F1",  # an encoded slash is not a path separator
        ISSUER + ":notaport/fhir/Observation/1",
        ISSUER + "/fhir/Observation/2",
    ],
)
def test_an_htu_naming_another_url_is_refused(htu: str) -> None:
    key = ECKey.generate_key("P-256")
    with pytest.raises(InvalidDpopProof):
        verify_dpop_proof(_proof(key, htu=htu), method="GET", url=URL)


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "JWT"},
        {"alg": "HS256"},
        {"alg": "ES384"},  # a P-256 key cannot sign ES384
        {"crit": ["exp"]},
        {"jwk": {"kty": "oct", "k": "c2VjcmV0"}},
    ],
)
def test_dpop_headers_are_checked(header: dict[str, Any]) -> None:
    key = ECKey.generate_key("P-256")
    protected = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)} | header
    body = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": URL, "iat": int(time.time())}
    signing_input = f"{_b64(orjson.dumps(protected))}.{_b64(orjson.dumps(body))}"
    signature = _b64(hashlib.sha256(signing_input.encode()).digest() * 2)
    with pytest.raises(InvalidDpopProof):
        verify_dpop_proof(f"{signing_input}.{signature}", method="GET", url=URL)


def test_a_proof_carrying_a_private_key_is_refused() -> None:
    key = ECKey.generate_key("P-256")
    proof = jwt.encode(
        {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=True)},
        {"jti": uuid.uuid4().hex, "htm": "GET", "htu": URL, "iat": int(time.time())},
        key,
        algorithms=["ES256"],
    )
    with pytest.raises(InvalidDpopProof, match="private"):
        verify_dpop_proof(proof, method="GET", url=URL)


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "a..c", "x" * 9000])
def test_garbage_proofs_are_refused(garbage: str) -> None:
    with pytest.raises(InvalidDpopProof):
        verify_dpop_proof(garbage, method="GET", url=URL)


def test_binding() -> None:
    key = ECKey.generate_key("P-256")
    proof = verify_dpop_proof(_proof(key), method="GET", url=URL)
    bound = {"cnf": {"jkt": key.thumbprint()}}
    check_binding(bound, proof, "dpop")
    with pytest.raises(InvalidToken):
        check_binding(bound, None, "dpop")
    with pytest.raises(InvalidToken):
        check_binding(bound, proof, "bearer")
    with pytest.raises(InvalidDpopProof):
        check_binding({"cnf": {"jkt": "another"}}, proof, "dpop")
    with pytest.raises(InvalidToken):
        check_binding({}, proof, "bearer")
    check_binding({}, None, "bearer")
