"""Helpers for tests that run real external parts (Prometheus); nothing here runs at import time."""
