"""The rendered NetworkPolicies allow exactly the call graph of the architecture
brief, no more, no less.

The test builds the set of pods the chart creates (Deployments, hook Jobs, the
helm-test Pod, and the CloudNativePG instance pods, labelled `cnpg.io/cluster`),
evaluates every rendered policy the way the NetworkPolicy API defines it (a
connection needs the source's egress AND the destination's ingress when both are
in the namespace; a pod selected by no policy of a type is open for that type, but
the default-deny policy selects every pod), and compares the resulting edges
(source, destination, port/protocol) with a set written here from contract.md,
independently of the chart's own list.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest
from deploy_helpers import DB_OWNERS, SERVICES, Render, full, render

# contract.md: gateway -> api; api -> records, fileservice, keyservice; records -> keyservice.
CALL_GRAPH = {("gateway", "api"), ("api", "records"), ("api", "fileservice"), ("api", "keyservice"), ("records", "keyservice")}
ANY = "internet"

Edge = tuple[str, str, str]


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    assert not selector.get("matchExpressions"), "the test understands matchLabels only"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _inventory(r: Render) -> dict[str, dict[str, str]]:
    """node name -> pod labels, for every pod in the namespace."""
    pods: dict[str, dict[str, str]] = {}
    for doc in r.docs:
        kind = doc["kind"]
        if kind in ("Deployment", "Job"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            pods[labels["app.kubernetes.io/component"]] = labels
        elif kind == "Pod":
            labels = doc["metadata"]["labels"]
            pods[labels["app.kubernetes.io/component"]] = labels
        elif kind == "Cluster":
            name = doc["metadata"]["name"]
            pods[name.removeprefix(full("")).strip("-")] = {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"}
    return pods


def _external_names(v: dict[str, Any]) -> tuple[dict[str, str], dict[tuple[tuple[str, str], ...], str]]:
    """Friendly names of the peers outside the namespace, from the values."""
    cidrs: dict[str, str] = {}
    for c in v["networkPolicy"]["kubeApiServer"]["cidrs"]:
        cidrs[c] = "kube-apiserver"
    for c in v["database"]["cnpg"]["backup"]["egressCidrs"] + v["fileservice"]["storage"]["s3"]["egressCidrs"]:
        cidrs[c] = "object-storage"
    for c in v["database"]["external"]["cidrs"]:
        cidrs[c] = "external-db"
    for c in v["networkPolicy"]["gatewayIngressCidrs"]:
        cidrs[c] = ANY

    def key(ns: dict[str, str], pod: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({**{f"ns:{k}": x for k, x in ns.items()}, **{f"pod:{k}": x for k, x in pod.items()}}.items()))

    np = v["networkPolicy"]
    peers = {
        key(np["dns"]["namespaceLabels"], np["dns"]["podLabels"]): "dns",
        key(np["prometheus"]["namespaceLabels"], np["prometheus"]["podLabels"]): "prometheus",
        key(
            {"kubernetes.io/metadata.name": v["database"]["cnpg"]["operatorNamespace"]}, {"app.kubernetes.io/name": "cloudnative-pg"}
        ): "cnpg-operator",
        key(v["gateway"]["redis"]["namespaceLabels"], v["gateway"]["redis"]["podLabels"]): "redis",
        key(v["api"]["redis"]["namespaceLabels"], v["api"]["redis"]["podLabels"]): "redis",
        key(v["observability"]["egress"]["namespaceLabels"], v["observability"]["egress"]["podLabels"]): "telemetry",
    }
    return cidrs, peers


def _resolve(peer: dict[str, Any], pods: dict[str, dict[str, str]], v: dict[str, Any]) -> set[str]:
    cidrs, externals = _external_names(v)
    if "ipBlock" in peer:
        assert not peer["ipBlock"].get("except")
        return {cidrs.get(peer["ipBlock"]["cidr"], f"cidr:{peer['ipBlock']['cidr']}")}
    if "namespaceSelector" in peer:
        ns = (peer["namespaceSelector"] or {}).get("matchLabels") or {}
        pod = (peer.get("podSelector") or {}).get("matchLabels") or {}
        key = tuple(sorted({**{f"ns:{k}": x for k, x in ns.items()}, **{f"pod:{k}": x for k, x in pod.items()}}.items()))
        assert ns, f"a namespaceSelector matching every namespace is too broad: {peer}"
        return {externals.get(key, f"external:{key}")}
    return {name for name, labels in pods.items() if _matches(peer.get("podSelector"), labels)}


def _ports(rule: dict[str, Any]) -> list[str]:
    ports = rule.get("ports")
    assert ports, f"a rule without ports allows every port: {rule}"
    return [f"{p['port']}/{p.get('protocol', 'TCP')}" for p in ports]


def allowed_edges(r: Render) -> set[Edge]:
    pods = _inventory(r)
    policies = r.of_kind("NetworkPolicy")
    v = r.values
    # per pod: the peers (name, port) its egress allows, and its ingress allows
    egress: dict[str, set[tuple[str, str]]] = {p: set() for p in pods}
    ingress: dict[str, set[tuple[str, str]]] = {p: set() for p in pods}
    isolated: dict[str, set[str]] = {"Ingress": set(), "Egress": set()}
    for policy in policies:
        spec = policy["spec"]
        selected = [name for name, labels in pods.items() if _matches(spec["podSelector"], labels)]
        for t in spec["policyTypes"]:
            isolated[t].update(selected)
        for name in selected:
            for rule in spec.get("ingress") or []:
                peers = {ANY} | set(pods) if "from" not in rule else set().union(*(_resolve(p, pods, v) for p in rule["from"]))
                ingress[name].update(product(peers, _ports(rule)))
            for rule in spec.get("egress") or []:
                assert "to" in rule, f"{policy['metadata']['name']}: an egress rule without `to` allows every destination"
                peers = set().union(*(_resolve(p, pods, v) for p in rule["to"]))
                egress[name].update(product(peers, _ports(rule)))
    assert isolated["Ingress"] == set(pods) and isolated["Egress"] == set(pods), "every pod must be isolated both ways"

    edges: set[Edge] = set()
    for name in pods:
        for peer, port in egress[name]:
            if peer in pods:
                if (name, port) in ingress[peer]:
                    edges.add((name, peer, port))
            else:
                edges.add((name, peer, port))
        for peer, port in ingress[name]:
            if peer not in pods:
                edges.add((peer, name, port))
    return edges


def expected_edges(r: Render) -> set[Edge]:
    v = r.values
    cnpg = v["database"]["cnpg"]["enabled"]
    e: set[Edge] = set()
    dns = {"53/UDP", "53/TCP"}
    e |= {(ANY, "gateway", "8443/TCP")}
    e |= {(a, b, "8443/TCP") for a, b in CALL_GRAPH}
    e |= {("prometheus", s, "9090/TCP") for s in SERVICES}
    e |= {(s, "dns", p) for s in SERVICES if s != "keyservice" for p in dns}  # keyservice resolves nothing
    for s in DB_OWNERS:
        db = f"{s}-db" if cnpg else "external-db"
        port = "5432/TCP" if cnpg else f"{v['database']['external']['port']}/TCP"
        e |= {(s, db, port), (f"{s}-migrate", db, port)}
        e |= {(f"{s}-migrate", "dns", p) for p in dns}
        if cnpg:
            e |= {(db, db, "5432/TCP"), (db, db, "8000/TCP")}
            e |= {("cnpg-operator", db, "8000/TCP"), ("cnpg-operator", db, "5432/TCP"), ("prometheus", db, "9187/TCP")}
            e |= {(db, "dns", p) for p in dns}
            e |= {
                (db, "kube-apiserver", f"{p}/TCP")
                for p in v["networkPolicy"]["kubeApiServer"]["ports"]
                if v["networkPolicy"]["kubeApiServer"]["cidrs"]
            }
            if v["database"]["cnpg"]["backup"]["enabled"]:
                e.add((db, "object-storage", f"{v['database']['cnpg']['backup']['port']}/TCP"))
    for service in ("gateway", "api"):
        if v[service]["redis"]["enabled"]:
            e.add((service, "redis", f"{v[service]['redis']['port']}/TCP"))
    if v["fileservice"]["storage"]["type"] == "s3":
        e.add(("fileservice", "object-storage", f"{v['fileservice']['storage']['s3']['port']}/TCP"))
    if v["observability"]["otlpEndpoint"] or v["observability"]["sentryDsn"]:
        e |= {(s, "telemetry", f"{p}/TCP") for s in SERVICES if s != "keyservice" for p in v["observability"]["egress"]["ports"]}
    if v["helmTest"]["enabled"]:
        e |= {("helm-test", "gateway", "8443/TCP")} | {("helm-test", "dns", p) for p in dns}
    return e


def test_allowed_edges_equal_the_call_graph(rendered: Render) -> None:
    allowed, expected = allowed_edges(rendered), expected_edges(rendered)
    assert allowed == expected, (
        f"\nallowed but not expected: {sorted(allowed - expected)}\nexpected but not allowed: {sorted(expected - allowed)}"
    )


def test_service_to_service_edges_are_exactly_the_contract(rendered: Render) -> None:
    service_edges = {(a, b) for a, b, _ in allowed_edges(rendered) if a in SERVICES and b in SERVICES}
    assert service_edges == CALL_GRAPH


def test_keyservice_opens_nothing_but_its_database() -> None:
    for name in ("prod", "default"):
        out = {(b, port) for a, b, port in allowed_edges(render(name)) if a == "keyservice"}
        assert out == {("keyservice-db", "5432/TCP")}


def test_each_service_reaches_only_its_own_database() -> None:
    edges = allowed_edges(render("prod"))
    for s in SERVICES:
        dbs = {b for a, b, _ in edges if a == s and b.endswith("-db")}
        assert dbs == ({f"{s}-db"} if s in DB_OWNERS else set()), (s, dbs)


@pytest.mark.parametrize(
    "extra",
    [
        ["--set", "database.cnpg.enabled=false", "--set", "database.external.cidrs={10.9.0.0/24}"],
        [
            "--set",
            "observability.otlpEndpoint=http://otel.observability:4318",
            "--set",
            "observability.egress.namespaceLabels.kubernetes\\.io/metadata\\.name=observability",
        ],
        ["--set", "networkPolicy.gatewayIngressCidrs={203.0.113.0/24}"],
    ],
    ids=["external-db", "telemetry", "restricted-internet"],
)
def test_variants_keep_the_call_graph(extra: list[str]) -> None:
    from deploy_helpers import VALUE_SETS, helm, load_documents, merged_values, template_args

    text = helm(*template_args(VALUE_SETS["prod"], *extra)).stdout
    values = merged_values(VALUE_SETS["prod"])
    # apply the --set overrides that change the expectation
    if "database.cnpg.enabled=false" in extra:
        values["database"]["cnpg"]["enabled"] = False
        values["database"]["external"]["cidrs"] = ["10.9.0.0/24"]
    if any(x.startswith("observability.otlpEndpoint") for x in extra):
        values["observability"]["otlpEndpoint"] = "http://otel.observability:4318"
        values["observability"]["egress"]["namespaceLabels"] = {"kubernetes.io/metadata.name": "observability"}
    if any(x.startswith("networkPolicy.gatewayIngressCidrs") for x in extra):
        values["networkPolicy"]["gatewayIngressCidrs"] = ["203.0.113.0/24"]
    r = Render(name="variant", text=text, docs=tuple(load_documents(text)), values=values)
    allowed, expected = allowed_edges(r), expected_edges(r)
    assert allowed == expected, (
        f"\nallowed but not expected: {sorted(allowed - expected)}\nexpected but not allowed: {sorted(expected - allowed)}"
    )
