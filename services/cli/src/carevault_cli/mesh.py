"""Start the five services as local processes on loopback.

Used by ``carevault run`` (``make run``) and by the end-to-end tests, so that the
tests exercise exactly what a first-look user runs.
"""

from __future__ import annotations

import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from carevault_crypto.pki import SERVICES, ensure_ca, ensure_service_certificates
from carevault_crypto.sealed import SealingKey

DB_SERVICES = ("api", "records", "keyservice", "fileservice")
# Start order: a service starts after what it calls, so readiness settles fast.
START_ORDER = ("keyservice", "records", "fileservice", "api", "gateway")
ENV_PREFIX = {"gateway": "GATEWAY_", "api": "API_", "records": "RECORDS_", "keyservice": "KEYSERVICE_", "fileservice": "FILESERVICE_"}
TLS_PORTS = {"gateway": 8443, "api": 8444, "records": 8445, "keyservice": 8446, "fileservice": 8447}
MANAGEMENT_PORTS = {"gateway": 9080, "api": 9081, "records": 9082, "keyservice": 9083, "fileservice": 9084}


@dataclass
class MeshLayout:
    """Where a local mesh keeps its state and which ports it uses."""

    state_dir: Path
    port_offset: int = 0
    # e.g. "postgresql+asyncpg://127.0.0.1:5432/carevault_{service}"; SQLite files when empty.
    database_url_template: str = ""
    redis_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def tls_port(self, service: str) -> int:
        return TLS_PORTS[service] + self.port_offset

    def management_port(self, service: str) -> int:
        return MANAGEMENT_PORTS[service] + self.port_offset

    def url(self, service: str) -> str:
        return f"https://127.0.0.1:{self.tls_port(service)}"

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    def database_url(self, service: str) -> str:
        if self.database_url_template:
            return self.database_url_template.format(service=service)
        return f"sqlite+aiosqlite:///{self.state_dir / 'db' / f'{service}.sqlite'}"

    @property
    def dev_token_file(self) -> Path:
        return self.state_dir / "dev-token"

    @property
    def audit_dir(self) -> Path:
        """The audit trail's keys (checkpoint signing key and public key, pseudonym key)."""
        return self.state_dir / "audit"

    @property
    def secrets_key_file(self) -> Path:
        """api's sealing key (TOTP secrets and signing keys at rest)."""
        return self.state_dir / "api-secrets.key"

    def log_file(self, service: str) -> Path:
        return self.state_dir / "logs" / f"{service}.log"

    def env(self, service: str) -> dict[str, str]:
        prefix = ENV_PREFIX[service]
        certs = self.state_dir / "certs"
        values: dict[str, str] = {
            "HOST": "127.0.0.1",
            "PORT": str(self.tls_port(service)),
            "MANAGEMENT_PORT": str(self.management_port(service)),
            "TLS_CERT_FILE": str(certs / f"{service}.pem"),
            "TLS_KEY_FILE": str(certs / f"{service}-key.pem"),
            "TLS_CA_FILE": str(self.state_dir / "ca.pem"),
            "LOG_FILE": str(self.log_file(service)),
        }
        if service in DB_SERVICES:
            values["DATABASE_URL"] = self.database_url(service)
        if service == "gateway":
            values["API_URL"] = self.url("api")
            values["PUBLIC_URL"] = self.gateway_url
            if self.redis_url:
                values["REDIS_URL"] = self.redis_url
        elif service == "api":
            values["DEV_TOKEN_FILE"] = str(self.dev_token_file)
            values["AUDIT_CHECKPOINT_KEY_FILE"] = str(self.audit_dir / "checkpoint.key")
            values["AUDIT_PSEUDONYM_KEY_FILE"] = str(self.audit_dir / "pseudonym.key")
            values["SECRETS_KEY_FILE"] = str(self.secrets_key_file)
            values["PUBLIC_URL"] = self.gateway_url
            if self.redis_url:
                values["REDIS_URL"] = self.redis_url
            values |= {
                "RECORDS_URL": self.url("records"),
                "FILESERVICE_URL": self.url("fileservice"),
                "KEYSERVICE_URL": self.url("keyservice"),
            }
        elif service == "records":
            values["KEYSERVICE_URL"] = self.url("keyservice")
        elif service == "keyservice":
            values["DOCTOR_KEYS_DIR"] = str(self.state_dir / "doctor" / "public")
        elif service == "fileservice":
            values["BLOB_DIR"] = str(self.state_dir / "blobs")
        env = {prefix + key: value for key, value in values.items()}
        env.update(self.extra_env)
        return env


def prepare_state(layout: MeshLayout) -> None:
    """CA, certificates and directories; idempotent."""
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.state_dir, 0o700)
    ensure_ca(layout.state_dir)
    ensure_service_certificates(layout.state_dir)
    for sub in ("db", "logs", "blobs", "doctor/public"):
        (layout.state_dir / sub).mkdir(parents=True, exist_ok=True)
    ensure_dev_doctor_key(layout.state_dir / "doctor")
    ensure_audit_keys(layout.audit_dir)
    if not layout.dev_token_file.exists():
        _write_private(layout.dev_token_file, secrets.token_urlsafe(32))
    if not layout.secrets_key_file.exists():
        SealingKey.generate_file(layout.secrets_key_file)


DEV_DOCTOR_WARNING = """\
DEVELOPMENT ONLY. This hosting-doctor key pair was generated by `carevault run`
so that a first look works end to end. Its private half and passphrase sit on
this machine, next to the data it can unlock: that is exactly what production
never does. In production the doctor generates the key pair offline with
`carevault-doctor keygen`, and only the public key is configured (see
docs/operations.md).
"""


def ensure_dev_doctor_key(doctor_dir: Path) -> None:
    """A development hosting-doctor key pair; the private half apart from the public keys."""
    private_file = doctor_dir / "DEV-ONLY-doctor.key"
    if private_file.exists():
        return
    from carevault_crypto.escrow import generate_doctor_key

    passphrase = secrets.token_urlsafe(24)
    key = generate_doctor_key()
    (doctor_dir / "public").mkdir(parents=True, exist_ok=True)
    _write_private(doctor_dir / "DEV-ONLY-doctor.passphrase", passphrase + "\n")
    _write_private(private_file, key.to_encrypted_text(passphrase))
    (doctor_dir / "public" / f"dev-{key.key_id}.pub").write_text(key.public_key().to_text(), encoding="utf-8")
    (doctor_dir / "README-DEV-ONLY.txt").write_text(DEV_DOCTOR_WARNING, encoding="utf-8")
    print("WARNING: " + DEV_DOCTOR_WARNING.splitlines()[0] + f" A development hosting-doctor key was written to {private_file}.")


def ensure_audit_keys(directory: Path) -> None:
    """The audit trail's keys for a local run (in production: `carevault audit keygen`
    on an operator's machine, then Secrets). Kept out of the databases."""
    from carevault_crypto.checkpoint import generate_checkpoint_signer
    from carevault_crypto.export import checkpoint_signer_to_text, pseudonym_key_to_text
    from carevault_crypto.pseudonym import PseudonymKey

    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "checkpoint.key").exists():
        signer = generate_checkpoint_signer()
        _write_private(directory / "checkpoint.key", checkpoint_signer_to_text(signer))
        (directory / "checkpoint.pub").write_text(signer.verifier().to_text(), encoding="utf-8")
    if not (directory / "pseudonym.key").exists():
        _write_private(directory / "pseudonym.key", pseudonym_key_to_text(PseudonymKey.generate()))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _command(service: str, action: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"carevault_{service}", action, *args]


def run_maintenance(
    layout: MeshLayout, service: str, action: str, *args: str, stdin: bytes = b"", base_env: Mapping[str, str] | None = None
) -> bytes:
    """Run one of a service's maintenance commands (database settings only); its stdout."""
    env = _child_env(layout, service, dict(os.environ if base_env is None else base_env))
    done = subprocess.run(_command(service, action, *args), env=env, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"carevault-{service} {action} failed (exit {done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout


def _child_env(layout: MeshLayout, service: str, base_env: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base_env.items() if not any(k.startswith(p) for p in ENV_PREFIX.values())}
    env.update(layout.env(service))
    # Route templates only in any OpenTelemetry instrumentation (raw paths carry ids).
    env.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    return env


def migrate_all(layout: MeshLayout, base_env: Mapping[str, str] | None = None) -> None:
    base = dict(os.environ if base_env is None else base_env)
    for service in DB_SERVICES:
        subprocess.run(_command(service, "migrate"), env=_child_env(layout, service, base), check=True)


def seed_demo(layout: MeshLayout, base_env: Mapping[str, str] | None = None) -> str:
    """Demo tenant, administrator (credentials printed once) and demo clients
    (``demo-client.json``); idempotent. Returns what it printed."""
    base = dict(os.environ if base_env is None else base_env)
    done = subprocess.run(
        [*_command("api", "seed"), "--state-dir", str(layout.state_dir)],
        env=_child_env(layout, "api", base),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


class Mesh:
    """The running processes of a local mesh."""

    def __init__(self, layout: MeshLayout) -> None:
        self.layout = layout
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, services: tuple[str, ...] = START_ORDER, base_env: Mapping[str, str] | None = None) -> None:
        base = dict(os.environ if base_env is None else base_env)
        for service in services:
            self.start_one(service, base)

    def start_one(self, service: str, base_env: Mapping[str, str] | None = None) -> None:
        base = dict(os.environ if base_env is None else base_env)
        log = open(self.layout.state_dir / "logs" / f"{service}.stderr", "ab")  # noqa: SIM115 - owned by the child
        self.processes[service] = subprocess.Popen(
            _command(service, "serve"),
            env=_child_env(self.layout, service, base),
            stdout=subprocess.DEVNULL,
            stderr=log,
            # Own session: a terminal's Ctrl-C reaches only `carevault run`, which
            # then stops the services in order instead of all at once.
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 60.0, services: tuple[str, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        logs = self.layout.state_dir / "logs"
        for service in services or tuple(self.processes):
            url = f"http://127.0.0.1:{self.layout.management_port(service)}/readyz"
            wait_until_ok(url, self.processes.get(service), deadline - time.monotonic(), name=service, logs=logs)

    def stop_one(self, service: str, timeout: float = 15.0) -> int | None:
        proc = self.processes.pop(service, None)
        return stop_process(proc, timeout) if proc is not None else None

    def stop(self) -> dict[str, int | None]:
        # Reverse start order: the edge stops taking traffic first.
        return {service: self.stop_one(service) for service in reversed(list(self.processes))}


def wait_until_ok(
    url: str,
    proc: subprocess.Popen[bytes] | Sequence[subprocess.Popen[bytes]] | None,
    timeout: float,
    *,
    name: str,
    logs: Path,
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` (or any of several)
    exits meanwhile. ``context``: the TLS context for an https:// URL."""
    procs = [] if proc is None else [proc] if isinstance(proc, subprocess.Popen) else list(proc)
    deadline = time.monotonic() + timeout
    while True:
        for each in procs:
            if each.poll() is not None:
                raise RuntimeError(f"{name} exited with code {each.returncode}; see {logs}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310 - 127.0.0.1 URLs from callers here
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready after {timeout:.0f}s; see {logs}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


__all__ = ["SERVICES", "Mesh", "MeshLayout", "migrate_all", "prepare_state", "seed_demo", "stop_process", "wait_until_ok"]
