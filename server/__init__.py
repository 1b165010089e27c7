"""sdbridge server: websocket job server for Stable Diffusion in image editors."""

__version__ = "0.1.0"
