"""Benchmarks the issues ask for whose features do not exist yet: each keeps its place
(and its target) in the report until the engineer of that issue writes it here.
None is pending now."""

from __future__ import annotations
