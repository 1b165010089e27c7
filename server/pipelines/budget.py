"""How many images (or tiles) one UNet call takes: as many as the free device memory holds, up to a cap.

The UNet is batch-invariant (`models.batchinv`), so the split never changes a result: it only
trades memory for fewer, larger calls. The activation estimate is deliberately generous
(classifier-free guidance included): running out of memory costs a job, a smaller batch a few
per cent.
"""

from __future__ import annotations

from ..models.loader import LoadedModel
from ..models.memory import device_free

MAX_PER_CALL = 8  # beyond this, larger calls buy (almost) nothing on any device
# Peak activation bytes per latent pixel per first-block channel per dtype byte of one image with
# CFG: ~1 GB for SD1.5 at 512², ~2.5 GB for SDXL at 1024² in fp16, plus headroom.
ACTIVATION_FACTOR = 400
FREE_FRACTION = 0.8  # of the free memory: the allocator fragments, other buffers live too


def image_bytes(model: LoadedModel, width_lat: int, height_lat: int) -> int:
    """Estimated peak UNet activation memory of one image (both CFG branches) at this latent size."""
    channels = int(model.unet.config.block_out_channels[0])
    return width_lat * height_lat * channels * model.dtype.itemsize * ACTIVATION_FACTOR


def per_call(model: LoadedModel, width_lat: int, height_lat: int, cap: int = MAX_PER_CALL) -> int:
    """Images (or tiles) of this latent size per UNet call that fit the device's free memory now."""
    fits = int(device_free(model.device) * FREE_FRACTION) // max(1, image_bytes(model, width_lat, height_lat))
    return max(1, min(cap, fits))
