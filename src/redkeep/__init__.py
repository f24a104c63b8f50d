"""redkeep: make Redis production-ready and keep it that way."""

__version__ = "0.1.0"
