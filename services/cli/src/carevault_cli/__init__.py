"""The ``carevault`` operator command."""
