"""The public surface stays small and hard to misuse."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import carevault_crypto
from carevault_crypto import _primitives

PACKAGE_DIR = Path(carevault_crypto.__file__).parent
RAW_MODULES = {"cryptography", "hmac", "hashlib", "secrets", "random", "Crypto", "nacl"}


def test_all_is_importable_and_complete() -> None:
    for name in carevault_crypto.__all__:
        assert hasattr(carevault_crypto, name)
    assert {"PatientKey", "PatientKeyring", "DecryptionError", "InvalidKeyFormat"} <= set(carevault_crypto.__all__)


def _public_callables() -> list[object]:
    found: list[object] = []
    for name in carevault_crypto.__all__:
        obj = getattr(carevault_crypto, name)
        found.append(obj)
        if inspect.isclass(obj):
            found.extend(member for attr, member in vars(obj).items() if not attr.startswith("_"))
            found.append(obj.__init__)
    return found


def test_no_nonce_or_mode_parameter_anywhere() -> None:
    for obj in _public_callables():
        func = obj.__func__ if isinstance(obj, classmethod | staticmethod) else obj
        if not callable(func):
            continue
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            continue
        for param in params:
            lowered = param.lower()
            assert "nonce" not in lowered, (func, param)
            assert lowered not in {"iv", "mode", "algorithm", "salt"}, (func, param)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


# Reviewed exceptions, each with its reason:
# - pki.py issues X.509 certificates for the local CA (key generation and signing,
#   no cipher); it needs cryptography's x509 builder, not the AEAD primitives.
REVIEWED_EXCEPTIONS = {"_primitives.py", "pki.py"}


def test_raw_primitives_only_in_private_primitives_module() -> None:
    modules = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        if path.name in REVIEWED_EXCEPTIONS:
            continue
        assert not (_imports(path) & RAW_MODULES), path.name
        assert "urandom" not in path.read_text(encoding="utf-8"), path.name


def test_primitives_is_private() -> None:
    assert "_primitives" not in carevault_crypto.__all__
    assert _primitives.random_bytes(4) != _primitives.random_bytes(4)


def test_hkdf_matches_rfc5869_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = _primitives.hkdf(ikm, salt=salt, info=info, length=42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_exports_only_in_export_module() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if path.name != "export.py":
            assert "def patient_key_to_header" not in source
            assert "def file_key_to_transport" not in source
