"""checkov's Kubernetes and Dockerfile checks: zero failures. A check that does not
apply is skipped next to the resource (a `checkov.io/skipN` annotation in the chart)
with its reason, and this test insists on the reason.

checkov is slow to start, so it runs once: on the prod render (the strictest
values), the k8s/ manifests and the five Dockerfiles. It runs from its own
virtual environment (it pins an old `packaging`) with --skip-download, so it
never calls out to a remote service."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import CHECKOV, REPO, render, require_tool

DOCKERFILES = [
    "gateway/Dockerfile",
    "services/api/Dockerfile",
    "services/records/Dockerfile",
    "keyservice/Dockerfile",
    "fileservice/Dockerfile",
]
K8S = ["k8s/namespace.yaml", "k8s/cert-manager/issuer.yaml", "k8s/rbac/ops-role.yaml"]


@pytest.fixture(scope="module")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    checkov = require_tool(CHECKOV, "run `make tools` (bash tests/deploy/setup_checkov.sh .tools/checkov-venv)")
    workdir: Path = tmp_path_factory.mktemp("checkov")
    prod = workdir / "carevault-prod.yaml"
    prod.write_text(render("prod").text)
    args = [
        str(checkov),
        "--skip-download",
        "--compact",
        "--output",
        "json",
        "--framework",
        "kubernetes",
        "dockerfile",
        "--file",
        str(prod),
    ]
    for f in DOCKERFILES + K8S:
        args += ["--file", str(REPO / f)]
    result = subprocess.run(
        args,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_has_no_failures(checkov_reports: list[dict[str, Any]]) -> None:
    failures = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c.get('file_path')})"
        for report in checkov_reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failures, "\n".join(failures)


def test_checkov_scanned_everything(checkov_reports: list[dict[str, Any]]) -> None:
    by_type = {r["check_type"]: r["summary"] for r in checkov_reports}
    assert set(by_type) == {"kubernetes", "dockerfile"}
    assert by_type["dockerfile"]["resource_count"] == len(DOCKERFILES)
    assert by_type["kubernetes"]["resource_count"] > 50
    assert all(s["parsing_errors"] == 0 for s in by_type.values())


def test_every_skip_is_justified(checkov_reports: list[dict[str, Any]]) -> None:
    skipped = [c for r in checkov_reports for c in r["results"]["skipped_checks"]]
    for c in skipped:
        reason = (c.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= 20, f"{c['check_id']} on {c['resource']} skipped without a reason"
