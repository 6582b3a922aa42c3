"""Signature files shipped with the service (data, not code)."""
