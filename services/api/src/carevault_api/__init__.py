"""carevault api: application zone: authorization, consents, audit, and orchestration of the calls below."""
