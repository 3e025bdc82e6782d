"""A host project's own DRF views, as the docs show them (no models)."""
