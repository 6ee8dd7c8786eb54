"""Small shared library of the carevault services.

Holds only what every service needs in the same shape: settings bases, the error
type and its RFC 9457 rendering, JSON logging, telemetry, mutual TLS, the
management (health/metrics) app, and database and HTTP-client factories.
It never imports a service.
"""
