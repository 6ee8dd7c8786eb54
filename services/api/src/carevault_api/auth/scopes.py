"""SMART App Launch v2 scopes: ``<context>/<resource type>.<cruds>``.

``patient/Observation.rs``, ``user/*.cruds``, ``system/Patient.r``. A v1 scope
(``.read``, ``.write``, ``.*``) is read as its v2 equivalent. Search parameters
after ``?`` are refused (carevault does not narrow scopes by parameter), as are
unknown contexts and letters out of order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTERACTIONS = "cruds"
CONTEXTS = ("patient", "user", "system")
_SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
#: Scopes that are not resource scopes but are understood.
OTHER_SCOPES = frozenset({"openid", "fhirUser", "offline_access", "launch/patient", "online_access"})


@dataclass(frozen=True, slots=True)
class SmartScope:
    context: str
    resource_type: str  # "*" for every type
    interactions: str  # subset of "cruds", in that order

    def __str__(self) -> str:
        return f"{self.context}/{self.resource_type}.{self.interactions}"

    def allows(self, resource_type: str, interaction: str) -> bool:
        return (self.resource_type == "*" or self.resource_type == resource_type) and interaction in self.interactions


def parse_scope(text: str) -> SmartScope | None:
    """One resource scope, or None when ``text`` is not a valid one."""
    match = _SCOPE.fullmatch(text)
    if match is None:
        return None
    context, resource_type, letters = match.groups()
    letters = _V1.get(letters, letters)
    if not letters or any(c not in INTERACTIONS for c in letters) or "".join(sorted(letters, key=INTERACTIONS.index)) != letters:
        return None
    if len(set(letters)) != len(letters):
        return None
    return SmartScope(context, resource_type, letters)


def parse_scopes(text: str) -> tuple[list[SmartScope], list[str], list[str]]:
    """(resource scopes, other understood scopes, rejected) of a space-separated list."""
    resources: list[SmartScope] = []
    others: list[str] = []
    rejected: list[str] = []
    for item in text.split():
        scope = parse_scope(item)
        if scope is not None:
            resources.append(scope)
        elif item in OTHER_SCOPES:
            others.append(item)
        else:
            rejected.append(item)
    return resources, others, rejected


def narrow(requested: list[SmartScope], allowed: list[SmartScope]) -> list[SmartScope]:
    """The requested scopes that ``allowed`` covers, each cut down to what is allowed."""
    granted: list[SmartScope] = []
    for want in requested:
        letters = set()
        for have in allowed:
            if have.context == want.context and have.resource_type in ("*", want.resource_type):
                letters |= set(want.interactions) & set(have.interactions)
        if letters:
            granted.append(SmartScope(want.context, want.resource_type, "".join(c for c in INTERACTIONS if c in letters)))
    return granted


def scopes_allow(scopes: tuple[SmartScope, ...], contexts: tuple[str, ...], resource_type: str, interaction: str) -> bool:
    return any(s.context in contexts and s.allows(resource_type, interaction) for s in scopes)


def format_scopes(scopes: list[SmartScope] | tuple[SmartScope, ...], others: list[str] | tuple[str, ...] = ()) -> str:
    return " ".join([*others, *map(str, scopes)])
