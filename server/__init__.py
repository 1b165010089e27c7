"""sdbridge server: websocket job server for Stable Diffusion in image editors."""

# The package version, written only here: pyproject reads it (dynamic version), `welcome` reports it.
__version__ = "0.1.0"
