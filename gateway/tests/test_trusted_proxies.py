"""GATEWAY_TRUSTED_PROXIES: addresses or networks, checked at start; nothing by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from carevault_gateway.config import Settings


def _settings(tmp_path: Path, **values: str) -> Settings:
    files = {}
    for name in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        files[name] = tmp_path / name
        files[name].write_text("unused", encoding="utf-8")  # only their existence is checked here
    return Settings(**files, **values)  # type: ignore[arg-type]


def test_no_proxy_is_trusted_by_default(tmp_path: Path) -> None:
    assert _settings(tmp_path).proxy_peers() == []


def test_addresses_and_networks(tmp_path: Path) -> None:
    settings = _settings(tmp_path, trusted_proxies=" 10.0.0.0/8, 192.0.2.10 ,fd00::/8")
    assert settings.proxy_peers() == ["10.0.0.0/8", "192.0.2.10", "fd00::/8"]


@pytest.mark.parametrize("value", ["ingress.example", "10.0.0.0/33", "*"])
def test_anything_else_is_refused_at_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError, match="trusted proxies"):
        _settings(tmp_path, trusted_proxies=value)
