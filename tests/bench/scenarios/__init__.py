"""The registered scenarios. Importing this package registers them; the report
lists them by group (see ``GROUP_ORDER``), in the order of the modules below.

A new group of scenarios is a new module here, added to ``MODULES``.
"""

from __future__ import annotations

import importlib

MODULES = ("plain", "foundation", "records", "scale", "signin", "files", "pending")

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
