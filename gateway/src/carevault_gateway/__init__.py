"""carevault gateway: public zone: TLS termination, limits, token checks and the streaming reverse proxy to api."""
