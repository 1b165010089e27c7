"""Checkpoint discovery, family detection and offline loading."""
