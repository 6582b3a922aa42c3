"""The process roles: scorer, ingest, serve (service.commands runs them). One module per role,
so that each process imports only its own side: a scorer loads no listener or output builders,
an ingest pod no scoring engine."""
