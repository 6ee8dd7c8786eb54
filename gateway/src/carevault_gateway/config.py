from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from carevault_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    port: int = 8443
    management_port: int = 9080
    api_url: str = "https://127.0.0.1:8444"
    # Empty: rate limits and replay caches are kept in this process only.
    redis_url: str = ""
    max_body_bytes: int = 64 * 1024 * 1024
    # Requests per second per client address, and the burst above it.
    rate_limit_per_second: float = 500.0
    rate_limit_burst: int = 1000
