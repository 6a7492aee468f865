"""Offline analyses: read activation stores (no model needed) and write tables and figures."""
