"""Every pod the chart creates meets Pod Security Standards `restricted` (plus the
chart's own stricter rules), and every Deployment has the availability settings of
issue 7: replicas, rolling update, spread, probes, grace period, PDB, HPA.
checkov has no availability checks, hence this file."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_helpers import DB_OWNERS, REPO, SERVICES, Render, full, pod_templates, render

# PSS restricted: allowed volume types
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def _pss_restricted_violations(owner: str, spec: dict[str, Any]) -> list[str]:
    v: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if spec.get(field) and field != "hostUsers":
            v.append(f"{owner}: {field}")
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            v.append(f"{owner}: volume {vol['name']} of type {kinds}")
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    for c in containers:
        sc = c.get("securityContext") or {}
        where = f"{owner}/{c['name']}"
        if sc.get("privileged"):
            v.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{where}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"{where}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            v.append(f"{where}: adds capabilities {caps['add']}")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            v.append(f"{where}: runAsNonRoot")
        for scope in (sc, pod_sc):
            if scope.get("runAsUser") == 0:
                v.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            v.append(f"{where}: seccompProfile {seccomp}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                v.append(f"{where}: hostPort")
        # the chart's own rules, stricter than PSS
        if sc.get("readOnlyRootFilesystem") is not True:
            v.append(f"{where}: readOnlyRootFilesystem must be true")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part) or {}):
                v.append(f"{where}: resources.{part} needs cpu and memory")
        writable = {m["mountPath"] for m in c.get("volumeMounts") or [] if not m.get("readOnly")}
        if not writable <= {"/tmp", "/var/lib/carevault/blobs"}:
            v.append(f"{where}: writable mounts {writable}")
    if spec.get("automountServiceAccountToken") is not False:
        v.append(f"{owner}: automountServiceAccountToken must be false")
    return v


def test_every_pod_meets_restricted(rendered: Render) -> None:
    violations = [x for owner, spec, _ in pod_templates(rendered) for x in _pss_restricted_violations(owner, spec)]
    assert not violations, "\n".join(violations)


def test_the_restricted_check_catches_violations() -> None:
    spec = {"containers": [{"name": "c", "securityContext": {"privileged": True}}], "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    assert len(_pss_restricted_violations("Pod/x", spec)) >= 5


def test_service_accounts_do_not_automount_tokens(rendered: Render) -> None:
    for sa in rendered.of_kind("ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is False, sa["metadata"]["name"]


def _probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


@pytest.mark.parametrize("name", ["prod", "preprod", "default"])
def test_deployments_are_highly_available(name: str) -> None:
    r = render(name)
    autoscaling = r.values["autoscaling"]["enabled"]
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in r.of_kind("HorizontalPodAutoscaler")}
    pdbs = r.of_kind("PodDisruptionBudget")
    for svc in SERVICES:
        d = r.named("Deployment", full(svc))
        spec, pod = d["spec"], d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        if autoscaling:
            assert "replicas" not in spec, "the HPA owns the replica count"
            hpa = hpas[full(svc)]
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["minReplicas"] >= 3
            assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
        else:
            assert spec["replicas"] == 3
            assert full(svc) not in hpas
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}

        keys = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
        assert set(keys) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for c in keys.values():
            assert c["maxSkew"] == 1
            assert all(labels[k] == v for k, v in c["labelSelector"]["matchLabels"].items())
        if name == "prod":
            assert keys["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "DoNotSchedule"

        (c,) = pod["containers"]
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert c[probe]["httpGet"]["path"] == path, (svc, probe)
            assert "scheme" not in c[probe]["httpGet"] or c[probe]["httpGet"]["scheme"] == "HTTP"
            assert _probe_port(c, c[probe]) == 9090, (svc, probe)

        config = r.named("ConfigMap", full(svc))["data"]
        prefix = svc.upper()
        assert config[f"{prefix}_PORT"] == "8443" and config[f"{prefix}_MANAGEMENT_PORT"] == "9090"
        assert config[f"{prefix}_HOST"] == "0.0.0.0"
        pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        shutdown = int(config[f"{prefix}_GRACEFUL_SHUTDOWN_SECONDS"])
        assert pause >= 5
        assert pod["terminationGracePeriodSeconds"] > pause + shutdown, svc

        matching = [p for p in pdbs if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
        assert len(matching) == 1, f"{svc}: one PDB, got {len(matching)}"
        assert matching[0]["spec"]["maxUnavailable"] == 1
        assert matching[0]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert "minAvailable" not in matching[0]["spec"]


def test_databases_have_three_instances_in_prod() -> None:
    r = render("prod")
    clusters = {c["metadata"]["name"]: c for c in r.of_kind("Cluster")}
    assert set(clusters) == {f"{full(s)}-db" for s in DB_OWNERS}
    for c in clusters.values():
        assert c["spec"]["instances"] == 3
        assert c["spec"]["affinity"]["podAntiAffinityType"] == "required"
        assert c["spec"]["plugins"][0]["isWALArchiver"] is True
    assert len(r.of_kind("ScheduledBackup")) == 4 and len(r.of_kind("ObjectStore")) == 4


def test_monitoring_objects_in_prod() -> None:
    r = render("prod")
    monitors = r.of_kind("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {full(s) for s in SERVICES}
    for m in monitors:
        assert m["spec"]["endpoints"][0]["port"] == "management"
    (rule,) = r.of_kind("PrometheusRule")
    text = str(rule["spec"])
    for metric in (
        "carevault_integrity_failures_total",
        "carevault_audit_append_failures_total",
        "carevault_break_glass_requests_total",
        "up{",
    ):
        assert metric in text
    alerts = {a["alert"] for g in rule["spec"]["groups"] for a in g["rules"]}
    assert {
        "CarevaultHighErrorRate",
        "CarevaultLatencyObjectiveMissed",
        "CarevaultKeyserviceUnreachable",
        "CarevaultIntegrityFailures",
        "CarevaultAuditWriteFailures",
        "CarevaultBreakGlassOpened",
    } <= alerts
    (dashboard,) = [c for c in r.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    import json

    board = json.loads(dashboard["data"]["carevault.json"])
    assert board["panels"], "the dashboard has panels"


_METRIC = re.compile(r"\bcarevault_[a-z0-9_]+")
_DEFINED_METRIC = re.compile(r"[\"'](carevault_[a-z0-9_]+)[\"']")


def test_every_metric_the_alerts_and_dashboard_use_is_one_the_services_emit() -> None:
    """An alert on a metric nobody emits never fires: compare the names in the
    PrometheusRule and the dashboard with the metrics defined in the services' code."""
    defined: set[str] = set()
    for source in REPO.glob("**/src/carevault_*/**/*.py"):
        defined |= set(_DEFINED_METRIC.findall(source.read_text(encoding="utf-8")))
    assert "carevault_http_requests_total" in defined  # the scan finds the services' metrics
    r = render("prod")
    (rule,) = r.of_kind("PrometheusRule")
    (dashboard,) = [c for c in r.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    used = set(_METRIC.findall(str(rule["spec"]))) | set(_METRIC.findall(dashboard["data"]["carevault.json"]))
    assert used
    for name in used:
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in defined or base in defined, f"{name} is used by the chart but no service defines it"


def test_gateway_is_the_only_public_service() -> None:
    r = render("prod")
    for s in r.of_kind("Service"):
        public = s["spec"]["type"] in ("LoadBalancer", "NodePort")
        assert not public or s["metadata"]["name"] == full("gateway"), s["metadata"]["name"]
        if public:
            assert {p["targetPort"] for p in s["spec"]["ports"]} == {"https"}, "no management port on the public Service"
