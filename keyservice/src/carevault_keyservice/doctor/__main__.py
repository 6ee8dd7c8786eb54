"""``python -m carevault_keyservice.doctor``, the same as ``carevault-doctor``."""

from carevault_keyservice.doctor.cli import main

raise SystemExit(main())
