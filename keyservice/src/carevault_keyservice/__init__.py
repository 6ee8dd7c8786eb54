"""carevault keyservice: key zone: escrows patient keys for the hosting doctor and runs the break-glass workflow."""
