"""The latent dashboard: a self-contained static HTML page built offline from a capture store."""

from .builder import MISSING, best_layer, page_data, render_page, write_dashboard

__all__ = ["MISSING", "best_layer", "page_data", "render_page", "write_dashboard"]
