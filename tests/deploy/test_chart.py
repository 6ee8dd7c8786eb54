"""helm lint and helm template for every values file; the values schema and the
validateValues helper refuse what they should."""

from __future__ import annotations

import subprocess
import sys

import pytest
from deploy_helpers import CHART, HERE, REPO, VALUE_SETS, helm, load_documents, render, template_args


def test_values_schema_is_generated_from_its_source() -> None:
    result = subprocess.run([sys.executable, str(HERE / "gen_values_schema.py"), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(name: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", "carevault"]
    for f in VALUE_SETS[name]:
        args += ["-f", str(REPO / f)]
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_template_renders(name: str) -> None:
    r = render(name)
    kinds = {d["kind"] for d in r.docs}
    assert {"Deployment", "Service", "NetworkPolicy", "ConfigMap", "ServiceAccount"} <= kinds
    for doc in r.docs:
        assert doc["metadata"].get("namespace") == "carevault" or doc["kind"] in {"ClusterRole"}, doc["metadata"]


def _template_fails(*extra: str) -> str:
    result = helm(*template_args([], *extra), check=False)
    assert result.returncode != 0, "helm template should have failed"
    return result.stderr


def test_schema_rejects_an_unknown_key() -> None:
    stderr = _template_fails("--set", "records.replicaCont=3")
    assert "replicaCont" in stderr and "not allowed" in stderr, stderr


def test_schema_rejects_an_unknown_top_level_key() -> None:
    stderr = _template_fails("--set", "secrets.dbPassword=hunter2")
    assert "secrets" in stderr, stderr


def test_schema_rejects_a_wrong_type() -> None:
    stderr = _template_fails("--set-string", "api.replicaCount=three")
    assert "replicaCount" in stderr and "want integer" in stderr, stderr


def test_schema_rejects_a_bad_enum() -> None:
    stderr = _template_fails("--set", "global.environment=production")
    assert "environment" in stderr, stderr


def _prod(*extra: str) -> subprocess.CompletedProcess[str]:
    return helm(*template_args(VALUE_SETS["prod"], *extra), check=False)


def test_validate_values_refuses_one_replica_in_prod() -> None:
    result = _prod("--set", "records.replicaCount=1", "--set", "autoscaling.enabled=false")
    assert result.returncode != 0
    assert "records.replicaCount is 1" in result.stderr, result.stderr


def test_validate_values_refuses_low_autoscaling_minimum_in_prod() -> None:
    result = _prod("--set", "api.autoscaling.minReplicas=1")
    assert result.returncode != 0
    assert "api.autoscaling.minReplicas is 1" in result.stderr, result.stderr


def test_validate_values_refuses_images_without_digest_in_prod() -> None:
    result = helm(*template_args(["charts/carevault/values-prod.yaml"]), check=False)
    assert result.returncode != 0
    assert "image.digest is empty" in result.stderr


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("observability.otlpEndpoint=https://user:secret@otel.example:4318", "carries a password"),
        ("fileservice.storage.s3.endpoint=https://AKIA:secret@s3.example", "carries a password"),
        ("gateway.image.tag=latest", "image.tag is latest"),
        ("certManager.issuer.create=true", "not a production CA"),
        ("database.cnpg.instances=1", "prod needs 3"),
        ("global.environmentBanner.enabled=true", "for preprod, not prod"),
        ("networkPolicy.enabled=false", "networkPolicy.enabled is false"),
    ],
)
def test_validate_values_refuses_unsafe_prod_combinations(flag: str, message: str) -> None:
    result = _prod("--set", flag)
    assert result.returncode != 0, f"{flag} was accepted"
    assert message in result.stderr, result.stderr


def test_validate_values_refuses_empty_egress_lists() -> None:
    # an empty `to:` would allow every destination: refused, not rendered
    result = helm(*template_args([], "--set", "database.cnpg.enabled=false"), check=False)
    assert result.returncode != 0
    assert "database.external.cidrs is empty" in result.stderr


def test_validate_values_refuses_rwo_volume_with_replicas() -> None:
    result = helm(*template_args([], "--set", "fileservice.storage.pvc.accessMode=ReadWriteOnce"), check=False)
    assert result.returncode != 0
    assert "ReadWriteOnce" in result.stderr


def test_preprod_has_banner_and_environment_header() -> None:
    r = render("preprod")
    gateway, api = (r.named("ConfigMap", f"cv-carevault-{svc}")["data"] for svc in ("gateway", "api"))
    assert gateway["GATEWAY_ENVIRONMENT"] == api["API_ENVIRONMENT"] == "preprod"
    assert api["API_ENVIRONMENT_BANNER"] == "true"  # api's pages show it (services/api/tests/test_pages.py)
    assert gateway["GATEWAY_ENVIRONMENT_HEADER"] == "X-Carevault-Environment"  # the gateway sets it
    prod = render("prod")
    assert "API_ENVIRONMENT_BANNER" not in prod.named("ConfigMap", "cv-carevault-api")["data"]


def test_migration_jobs_are_hooks_for_each_database_owner() -> None:
    for name in ("prod", "default"):
        jobs = {j["metadata"]["name"]: j for j in render(name).of_kind("Job")}
        assert set(jobs) == {f"cv-carevault-{s}-migrate" for s in ("api", "records", "keyservice", "fileservice")}
        for job in jobs.values():
            hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
            assert "pre-upgrade" in hooks
            assert hooks & {"pre-install", "post-install"}
            assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    external = helm(
        *template_args(VALUE_SETS["prod"], "--set", "database.cnpg.enabled=false", "--set", "database.external.cidrs={10.9.0.0/24}")
    )
    assert "helm.sh/hook: pre-install,pre-upgrade" in external.stdout


# Settings whose names look secret but are not (a lifetime is not a token).
NOT_SECRETS = frozenset({"API_ACCESS_TOKEN_TTL_SECONDS"})


def test_secrets_are_files_never_env() -> None:
    for name in VALUE_SETS:
        r = render(name)
        assert not r.of_kind("Secret"), "the chart must not create Secrets: existingSecret only"
        for cm in r.of_kind("ConfigMap"):
            for key in cm.get("data") or {}:
                secret_like = any(word in key for word in ("PASSWORD", "SECRET_KEY", "TOKEN")) and key not in NOT_SECRETS
                assert not secret_like or key.endswith("_FILE"), key
        for doc in r.of_kind("Deployment") + r.of_kind("Job"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                for env in c.get("env", []):
                    assert "valueFrom" not in env or "secretKeyRef" not in env["valueFrom"], (doc["metadata"]["name"], env)


def test_certificates_carry_the_spiffe_identity() -> None:
    r = render("prod")
    certs = {c["metadata"]["name"]: c for c in r.of_kind("Certificate")}
    for svc in ("gateway", "api", "records", "keyservice", "fileservice"):
        spec = certs[f"cv-carevault-{svc}"]["spec"]
        assert spec["uris"] == [f"spiffe://carevault/{svc}"]
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["issuerRef"] == {"name": "carevault-mesh-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_config_change_rolls_pods() -> None:
    base = render("preprod").named("Deployment", "cv-carevault-api")
    changed = helm(*template_args(VALUE_SETS["preprod"], "--set", "global.logLevel=DEBUG", "-s", "templates/api/deployment.yaml")).stdout
    old = base["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert old and old not in changed


def test_public_url_is_the_same_for_gateway_and_api() -> None:
    """The issuer of api's tokens and the URL DPoP proofs name: one value for both."""
    for name in ("prod", "preprod"):
        r = render(name)
        gateway = r.named("ConfigMap", "cv-carevault-gateway")["data"]["GATEWAY_PUBLIC_URL"]
        api = r.named("ConfigMap", "cv-carevault-api")["data"]["API_PUBLIC_URL"]
        assert gateway == api and gateway.startswith("https://"), (name, gateway, api)
        assert r.named("ConfigMap", "cv-carevault-api")["data"]["API_REDIS_URL_FILE"] == "/var/run/carevault/redis/url"
    result = _prod("--set-json", "gateway.publicHostnames=[]", "--set", "gateway.publicUrl=")
    assert result.returncode != 0 and "gateway.publicUrl" in result.stderr, result.stderr
    result = _prod("--set", "gateway.publicUrl=http://carevault.example")
    assert result.returncode != 0, result.stderr


def test_api_redis_needs_its_secret() -> None:
    result = _prod("--set", "api.redis.existingSecret=")
    assert result.returncode != 0 and "api.redis.existingSecret" in result.stderr, result.stderr


def test_api_seals_its_secrets_with_a_mounted_key() -> None:
    for name in ("prod", "preprod", "demo"):
        r = render(name)
        data = r.named("ConfigMap", "cv-carevault-api")["data"]
        assert data["API_SECRETS_KEY_FILE"] == "/var/run/carevault/secrets-key/key", name
        pod = r.named("Deployment", "cv-carevault-api")["spec"]["template"]["spec"]
        assert any(v["name"] == "secrets-key" and v["secret"]["secretName"] for v in pod["volumes"]), name
    result = _prod("--set", "api.secretsKey.existingSecret=")
    assert result.returncode != 0 and "api.secretsKey.existingSecret" in result.stderr, result.stderr


SETTINGS_OF = {
    "gateway": ("GATEWAY_", "carevault_gateway.config"),
    "api": ("API_", "carevault_api.config"),
    "records": ("RECORDS_", "carevault_records.config"),
    "keyservice": ("KEYSERVICE_", "carevault_keyservice.config"),
    "fileservice": ("FILESERVICE_", "carevault_fileservice.config"),
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_configured_variable_is_a_setting_of_its_service(name: str) -> None:
    """Settings ignore unknown variables, so a misspelt one in the chart would be
    silently without effect: every ConfigMap key must name a field of the service's
    Settings (or its ``*_FILE`` form)."""
    import importlib

    r = render(name)
    for service, (prefix, module) in SETTINGS_OF.items():
        fields = set(importlib.import_module(module).Settings.model_fields)
        data = r.named("ConfigMap", f"cv-carevault-{service}")["data"]
        unknown = [key for key in data if not key.startswith(prefix) or key.removeprefix(prefix).lower() not in fields]
        assert not unknown, (service, unknown)


def test_binary_limits_reach_every_service_on_the_path() -> None:
    r_default = render("prod")
    assert r_default.named("ConfigMap", "cv-carevault-api")["data"]["API_MAX_BINARY_BYTES"] == "2147483648"
    result = helm(
        *template_args(
            VALUE_SETS["preprod"],
            "--set", "api.binary.maxBytes=104857600",
            "--set", "api.binary.orphanSweep.intervalSeconds=0",
        )
    )  # fmt: skip
    configs = {d["metadata"]["name"]: d["data"] for d in load_documents(result.stdout) if d.get("kind") == "ConfigMap"}
    assert configs["cv-carevault-gateway"]["GATEWAY_MAX_BINARY_BODY_BYTES"] == "104857600"
    assert configs["cv-carevault-api"]["API_MAX_BINARY_BYTES"] == "104857600"
    assert configs["cv-carevault-fileservice"]["FILESERVICE_MAX_BLOB_BYTES"] == "104857600"
    assert configs["cv-carevault-api"]["API_BINARY_ORPHAN_SWEEP_INTERVAL_SECONDS"] == "0"


def test_trace_sampling_reaches_every_exporting_service() -> None:
    result = helm(
        *template_args(
            VALUE_SETS["preprod"],
            "--set", "observability.otlpEndpoint=http://otel-collector.monitoring:4318/v1/traces",
            "--set-json", "observability.traceSampleRatio=0.1",
            "--set-json", 'observability.egress.namespaceLabels={"kubernetes.io/metadata.name":"monitoring"}',
        ),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    configs = {d["metadata"]["name"]: d["data"] for d in load_documents(result.stdout) if d.get("kind") == "ConfigMap"}
    for service in ("gateway", "api", "records", "fileservice"):
        prefix = SETTINGS_OF[service][0]
        assert configs[f"cv-carevault-{service}"][prefix + "TRACE_SAMPLE_RATIO"] == "0.1", service
    assert configs["cv-carevault-keyservice"]["KEYSERVICE_OTLP_ENDPOINT"] == ""  # keyservice exports nothing


def test_trusted_proxies_reach_the_gateway() -> None:
    assert render("prod").named("ConfigMap", "cv-carevault-gateway")["data"]["GATEWAY_TRUSTED_PROXIES"] == ""
    result = helm(*template_args(VALUE_SETS["preprod"], "--set-json", 'gateway.trustedProxies=["10.0.0.0/8","192.0.2.10/32"]'))
    configs = {d["metadata"]["name"]: d["data"] for d in load_documents(result.stdout) if d.get("kind") == "ConfigMap"}
    assert configs["cv-carevault-gateway"]["GATEWAY_TRUSTED_PROXIES"] == "10.0.0.0/8,192.0.2.10/32"
    refused = helm(*template_args(VALUE_SETS["preprod"], "--set-json", 'gateway.trustedProxies=["ingress.example"]'), check=False)
    assert refused.returncode != 0 and "trustedProxies" in refused.stderr, refused.stderr
