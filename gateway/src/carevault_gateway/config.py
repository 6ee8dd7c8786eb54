from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from carevault_common.settings import ServiceSettings, read_secret_file


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    port: int = 8443
    management_port: int = 9080
    api_url: str = "https://127.0.0.1:8444"
    # Empty: rate limits and replay caches are kept in this process only.
    redis_url: str = ""
    redis_url_file: Path | None = None
    # The certificate clients see; the mesh identity (tls_cert_file) is used towards api.
    # Public CAs do not issue spiffe:// identities, hence two pairs in production.
    public_tls_cert_file: Path | None = None
    public_tls_key_file: Path | None = None
    # Response header that marks non-production environments (empty: none).
    environment_header: str = "X-Carevault-Environment"
    max_body_bytes: int = 64 * 1024 * 1024
    # Binary content (POST/PUT /fhir/Binary) streams through; its own, larger limit.
    max_binary_body_bytes: int = 2 * 1024 * 1024 * 1024
    # Seconds a call to api may wait for the next bytes (no bound on a whole call:
    # a large file takes as long as it takes; a stalled one fails).
    upstream_idle_seconds: float = 300.0
    # The load balancers or ingress controllers in front of the gateway (IPs or CIDR
    # networks, comma-separated): from them, X-Forwarded-For names the client (the
    # rightmost address that is not one of them); from anyone else it is ignored.
    trusted_proxies: str = ""
    # Requests per second per client address, and the burst above it.
    rate_limit_per_second: float = 500.0
    rate_limit_burst: int = 1000
    # The public base URL clients use, for the DPoP htu check; empty: https:// + the Host header.
    public_url: str = ""

    @model_validator(mode="after")
    def _resolve_redis(self) -> Settings:
        if self.redis_url_file is not None:
            object.__setattr__(self, "redis_url", read_secret_file(self.redis_url_file))
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in _items(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"trusted proxies: {item!r} is not an IP address or network") from None
        return value

    def proxy_peers(self) -> list[str]:
        return _items(self.trusted_proxies)

    def server_certificate(self) -> tuple[Path, Path]:
        if self.public_tls_cert_file and self.public_tls_key_file:
            return self.public_tls_cert_file, self.public_tls_key_file
        return self.tls_cert_file, self.tls_key_file


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
