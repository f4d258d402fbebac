"""The package version, in one place (the checkpoints record it)."""
__version__ = "0.1.0"
