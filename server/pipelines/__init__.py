"""Sampling pipelines built directly on the loaded UNet/VAE/text encoders (diffusers components)."""
