"""Fixtures of the offline deployment tests (helpers live in deploy_helpers.py)."""

import sys
from pathlib import Path

# the helpers are imported by name, whatever pytest's import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_helpers import rendered  # noqa: F401  (the fixture)
