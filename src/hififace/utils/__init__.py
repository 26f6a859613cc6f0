"""Small shared helpers (atomic writes, logging, optional imports)."""
