"""docker-compose.yml, checked the way `docker compose config` would be where
Compose exists (no Docker engine here): only the gateway is published, every
service is on the private network, healthchecks everywhere, no secret inline."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from deploy_helpers import REPO, SERVICES

COMPOSE = REPO / "docker-compose.yml"
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|_KEY$|DSN|CREDENTIAL", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_expected_services(compose: dict[str, Any]) -> None:
    names = set(compose["services"])
    assert {"postgres", "redis", "prometheus", *SERVICES} <= names
    assert {f"{s}-migrate" for s in ("api", "records", "keyservice", "fileservice")} <= names


def test_only_the_gateway_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"gateway"}
    for port in compose["services"]["gateway"]["ports"]:
        assert str(port).endswith(":8443"), "the gateway publishes its HTTPS port only, never 9090"
    for name, s in compose["services"].items():
        assert s.get("network_mode") is None, f"{name}: network_mode bypasses the private network"


def test_every_service_is_on_the_private_network(compose: dict[str, Any]) -> None:
    assert compose["networks"]["private"].get("internal") is True
    for name, s in compose["services"].items():
        networks = s.get("networks") or []
        networks = list(networks) if isinstance(networks, (list, dict)) else []
        assert "private" in networks, name
        if name != "gateway":
            assert set(networks) == {"private"}, f"{name} must not leave the private network"


def test_healthchecks(compose: dict[str, Any]) -> None:
    for name, s in compose["services"].items():
        if (s.get("labels") or {}).get("io.carevault.one-shot") == "true":
            assert s.get("restart") == "no", name
            continue
        hc = s.get("healthcheck")
        assert hc and not hc.get("disable") and hc.get("test"), f"{name}: no healthcheck"
    for svc in SERVICES:
        test = " ".join(compose["services"][svc]["healthcheck"]["test"])
        assert "9090/healthz" in test and "curl" not in test


def test_services_wait_for_their_migration(compose: dict[str, Any]) -> None:
    for svc in ("api", "records", "keyservice", "fileservice"):
        deps = compose["services"][svc]["depends_on"]
        assert deps[f"{svc}-migrate"]["condition"] == "service_completed_successfully"
        assert compose["services"][f"{svc}-migrate"]["command"] == ["migrate"]


def test_no_secret_inline(compose: dict[str, Any]) -> None:
    for name, s in compose["services"].items():
        for key, value in _env(s).items():
            if SECRET_WORDS.search(key) and value:
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), f"{name}: {key} inline"
            assert not URL_WITH_PASSWORD.match(value), f"{name}: {key} carries a password"
        command = " ".join(map(str, s.get("command") or []))
        assert "requirepass" not in command and "--password" not in command, name
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"file"}, f"secret {name} must come from a file"
        assert secret["file"].startswith("./.carevault/"), f"secret {name} lives outside the git-ignored .carevault/"


def test_mtls_material_is_mounted(compose: dict[str, Any]) -> None:
    for svc in SERVICES:
        s = compose["services"][svc]
        env = _env(s)
        prefix = svc.upper()
        assert {f"{svc}_tls_cert", f"{svc}_tls_key", "ca_cert"} <= set(s["secrets"])
        assert env[f"{prefix}_TLS_CERT_FILE"] == f"/run/secrets/{svc}_tls_cert"
        assert env[f"{prefix}_TLS_KEY_FILE"] == f"/run/secrets/{svc}_tls_key"
        assert env[f"{prefix}_TLS_CA_FILE"] == "/run/secrets/ca_cert"
        assert env[f"{prefix}_HOST"] == "0.0.0.0"


def test_services_are_hardened(compose: dict[str, Any]) -> None:
    for svc in SERVICES:
        s = compose["services"][svc]
        assert s["read_only"] is True and s["user"] == "10001:10001"
        assert s["cap_drop"] == ["ALL"] and "no-new-privileges:true" in s["security_opt"]
        assert any(str(t).startswith("/tmp") for t in s["tmpfs"])


def test_prometheus_scrapes_every_management_port(compose: dict[str, Any]) -> None:
    mount = next(v for v in compose["services"]["prometheus"]["volumes"] if "prometheus.yml" in v)
    config = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{s}:9090" for s in SERVICES}
