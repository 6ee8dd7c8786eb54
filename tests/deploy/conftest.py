"""Fixtures of the offline deployment tests (helpers live in deploy_helpers.py)."""

from deploy_helpers import rendered  # noqa: F401  (the fixture)
