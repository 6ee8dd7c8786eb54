"""Shared helpers and fixtures of the offline deployment tests.

The real tools are fetched by `make tools` (tests/deploy/fetch_tools.sh and
tests/deploy/setup_checkov.sh) into .tools/. Without them the tests that need them
skip with a message saying how to get them; under CI=true they fail instead, so a
CI run can never pass by skipping.

Override the tool paths with CAREVAULT_HELM and CAREVAULT_CHECKOV.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "carevault"
HERE = Path(__file__).resolve().parent
NAMESPACE = "carevault"
RELEASE = "cv"
KUBE_VERSION = "1.35.0"
SERVICES = ("gateway", "api", "records", "keyservice", "fileservice")
DB_OWNERS = ("api", "records", "keyservice", "fileservice")

HELM = Path(os.environ.get("CAREVAULT_HELM", REPO / ".tools" / "bin" / "helm"))
CHECKOV = Path(os.environ.get("CAREVAULT_CHECKOV", REPO / ".tools" / "checkov-venv" / "bin" / "checkov"))

# name -> extra values files (relative to the repository), layered on values.yaml
VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "prod": ["charts/carevault/values-prod.yaml", "tests/deploy/values-images-test.yaml"],
    "preprod": ["charts/carevault/values-preprod.yaml"],
    "demo": ["charts/carevault/values-demo.yaml"],
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(path: Path, how: str) -> Path:
    """Skip (locally) or fail (CI=true) when a tool is missing."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = f"{path} not found: {how}"
    if in_ci():
        pytest.fail(f"CI=true and a deployment test tool is missing: {message}")
    pytest.skip(message)


def require_helm() -> Path:
    return require_tool(HELM, "run `make tools` (bash tests/deploy/fetch_tools.sh .tools/bin)")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(require_helm()), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/carevault-helm-cache", "HELM_CONFIG_HOME": "/tmp/carevault-helm-config"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def template_args(files: list[str], *extra: str) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for f in files:
        args += ["-f", str(REPO / f)]
    return [*args, *extra]


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses duplicate mapping keys, which the API server would silently merge."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc]


@dataclass(frozen=True)
class Render:
    name: str
    text: str
    docs: tuple[dict[str, Any], ...]
    values: dict[str, Any]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.of_kind(kind):
            if d["metadata"]["name"] == name:
                return d
        raise KeyError(f"{kind}/{name} not rendered")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merged_values(files: list[str]) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        values = deep_merge(values, yaml.safe_load((REPO / f).read_text()) or {})
    return values


@functools.cache
def render(name: str) -> Render:
    files = VALUE_SETS[name]
    text = helm(*template_args(files)).stdout
    return Render(name=name, text=text, docs=tuple(load_documents(text)), values=merged_values(files))


@pytest.fixture(params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> Render:
    return render(request.param)


def full(svc: str) -> str:
    """Resource name of a service in the test release."""
    return f"{RELEASE}-carevault-{svc}"


def pod_templates(r: Render) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(owner "Kind/name", pod spec, pod labels) of every pod the chart creates itself."""
    pods = []
    for doc in r.docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            template = doc["spec"]["template"]
            pods.append((f"{kind}/{name}", template["spec"], template["metadata"].get("labels", {})))
        elif kind == "Pod":
            pods.append((f"{kind}/{name}", doc["spec"], doc["metadata"].get("labels", {})))
    return pods
