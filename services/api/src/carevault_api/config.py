from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from carevault_common.settings import DatabaseSettings, Environment, ServiceSettings, read_secret_file

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class Settings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore", frozen=True)

    port: int = 8444
    management_port: int = 9081
    records_url: str = "https://127.0.0.1:8445"
    fileservice_url: str = "https://127.0.0.1:8447"
    keyservice_url: str = "https://127.0.0.1:8446"
    # How long records may take over a transaction or batch Bundle (other calls: 15 s).
    records_bundle_timeout_seconds: float = 120.0
    # Development authentication: a bearer token read from this file grants the
    # "dev" tenant's FHIR data. Refused outside the dev environment.
    dev_token_file: Path | None = None
    # Largest Binary content accepted (413 beyond); fileservice and the gateway have their own.
    max_binary_bytes: int = 2 * 1024 * 1024 * 1024
    # Largest Binary returned as base64 ``data`` in JSON (406 above: ask for the raw type).
    binary_json_limit: int = 1024 * 1024
    # Seconds a file transfer to or from fileservice may stall before it fails.
    file_transfer_idle_seconds: float = 60.0
    # Longest a Binary write may take, from prepare to commit (408 beyond): the orphan
    # sweep relies on it, since it deletes the blobs of uploads older than this.
    binary_upload_max_seconds: int = 6 * 3600
    # Orphan sweep: every this many seconds (0: never; the first pass runs at start),
    # blobs whose upload began more than binary_upload_max_seconds + the grace ago
    # and whose Binary never committed (api died in between) are deleted.
    binary_orphan_sweep_interval_seconds: int = 600
    binary_orphan_grace_seconds: int = 900
    # The public base URL clients use (the gateway's): the token issuer, and the
    # base of the DPoP htu.
    public_url: str = "https://127.0.0.1:8443"
    # Pages (sign-in, refusals) name the environment at their top: for preprod, so that
    # testers see it is not production. Text only: the gateway's CSP allows no styles.
    environment_banner: bool = False
    # Empty: replay markers in api's database (shared by its replicas).
    redis_url: str = ""
    redis_url_file: Path | None = None
    access_token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # ES256 or EdDSA.
    signing_algorithm: str = "ES256"
    signing_key_rotation_days: float = 30.0
    # Dev only: clients' JWKS URLs may be http and name private or loopback addresses.
    jwks_uri_private_networks: bool = False
    # The key sealing TOTP secrets and signing keys in api's database (32 random bytes,
    # base64url; `carevault-api new-secrets-key FILE` writes one). Required but in dev.
    secrets_key_file: Path | None = None
    # During a rotation of that key: the previous one, still opened (values are resealed).
    secrets_previous_key_file: Path | None = None
    # Every replica reloads the list of revoked access tokens this often: a revocation
    # made through one replica applies on all of them within this bound (seconds).
    revocation_refresh_seconds: float = 5.0
    # WebAuthn (an optional second factor): the relying-party id credentials are scoped to
    # (default: the host of public_url) and the origins an assertion may come from
    # (default: public_url; a native app adds its own, e.g. android:apk-key-hash:...).
    webauthn_rp_id: str = ""
    webauthn_origins: list[str] = []
    webauthn_rp_name: str = "carevault"

    # -- break-glass (docs/security.md, "Break-glass") --------------------------------
    # Lifetime of the hosting doctor's patient-scoped token; it never outlives the
    # approval window (KEYSERVICE_BREAK_GLASS_WINDOW_SECONDS), and closing the case ends it.
    break_glass_token_ttl_seconds: int = 900
    # Largest written request document accepted (stored encrypted through fileservice).
    break_glass_document_max_bytes: int = 10 * 1024 * 1024
    # Largest bulk re-escrow upload (JSON lines, one call to keyservice, at most 10,000
    # packages): split a larger one into several files.
    escrow_upload_max_bytes: int = 32 * 1024 * 1024

    # -- audit trail (docs/audit.md) --------------------------------------------------
    # The Ed25519 key that signs checkpoints of the chain head (a mounted Secret; never
    # in the database). Required outside dev; in dev, no checkpoints without it.
    audit_checkpoint_key_file: Path | None = None
    # The HMAC key of the patient pseudonyms in the audit trail and the erasure journal.
    # Required outside dev; in dev, an ephemeral key (pseudonyms change on restart).
    audit_pseudonym_key_file: Path | None = None
    audit_checkpoint_interval_seconds: float = 300.0
    # Events older than this are pruned, at a signed checkpoint (docs/audit.md, "Retention").
    audit_retention_days: int = 3653
    audit_prune_interval_seconds: float = 86400.0
    # How long an append waits for the chain head before the request fails (503).
    audit_lock_timeout_ms: int = 2000

    @model_validator(mode="after")
    def _checks(self) -> Settings:
        if self.dev_token_file is not None and self.environment != Environment.DEV:
            raise ValueError("dev_token_file is a development aid and is refused outside the dev environment")
        if self.redis_url_file is not None:
            object.__setattr__(self, "redis_url", read_secret_file(self.redis_url_file))
        if self.signing_algorithm not in ("ES256", "EdDSA"):
            raise ValueError("signing_algorithm must be ES256 or EdDSA")
        if self.secrets_key_file is None and self.environment != Environment.DEV:
            raise ValueError("secrets_key_file is required outside the dev environment (TOTP secrets and signing keys are sealed with it)")
        if self.jwks_uri_private_networks and self.environment != Environment.DEV:
            raise ValueError("jwks_uri_private_networks is a development aid and is refused outside the dev environment")
        if not 0.5 <= self.revocation_refresh_seconds <= 60:
            raise ValueError("revocation_refresh_seconds must be between 0.5 and 60")
        if not 30 <= self.break_glass_token_ttl_seconds <= 3600:
            raise ValueError("break_glass_token_ttl_seconds must be between 30 and 3600")
        if not 1024 <= self.break_glass_document_max_bytes <= 32 * 1024 * 1024:
            raise ValueError("break_glass_document_max_bytes must be between 1 KiB and 32 MiB")
        if not 1024 <= self.escrow_upload_max_bytes <= 64 * 1024 * 1024:
            raise ValueError("escrow_upload_max_bytes must be between 1 KiB and 64 MiB")
        if not 30 <= self.access_token_ttl_seconds <= 3600:
            raise ValueError("access_token_ttl_seconds must be between 30 and 3600")
        if self.is_production_like and not self.public_url.startswith("https://"):
            raise ValueError("public_url must be https")
        if self.binary_upload_max_seconds < 1 or self.binary_orphan_sweep_interval_seconds < 0 or self.binary_orphan_grace_seconds < 0:
            raise ValueError("binary_upload_max_seconds must be >= 1; the orphan sweep interval and grace >= 0")
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        if not self.webauthn_rp_id:
            object.__setattr__(self, "webauthn_rp_id", urlsplit(self.public_url).hostname or "")
        if not self.webauthn_origins:
            object.__setattr__(self, "webauthn_origins", [self.public_url])
        return self

    @model_validator(mode="after")
    def _audit_keys(self) -> Settings:
        if self.environment != Environment.DEV:
            for name in ("audit_checkpoint_key_file", "audit_pseudonym_key_file"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name} is required outside the dev environment")
        for name in ("audit_checkpoint_key_file", "audit_pseudonym_key_file"):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        if self.audit_retention_days < 180:
            raise ValueError("audit_retention_days below 180 days defeats the audit trail (docs/audit.md)")
        if self.audit_checkpoint_interval_seconds <= 0 or self.audit_prune_interval_seconds <= 0:
            raise ValueError("audit intervals must be positive")
        return self
