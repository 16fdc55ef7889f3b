"""The HTTP face: FastAPI routes that translate requests into service calls."""
