"""How much memory models and sampling may use: the device tier's budget, the RAM tier's, and free working memory.

On a GPU the device tier is VRAM and the RAM tier holds models pushed out of it, so switching
back costs one host-to-device copy instead of a disk read. On the CPU the device *is* RAM: the
device tier holds the models ready to run (auto budget: half the RAM available at start-up), and
the RAM tier defaults to nothing, since a model moved "to RAM" would stay exactly where it is;
`--ram-cache-gb` there just lets more models stay loaded.
"""

from __future__ import annotations

import os

import torch

GIB = 1 << 30
# VRAM left free for activations (and the CUDA context) when the budget is automatic.
VRAM_RESERVE_MIN = 2 * GIB
VRAM_RESERVE_FRACTION = 0.2
CPU_DEVICE_FRACTION = 0.5  # of available RAM, for the CPU's device tier
RAM_TIER_FRACTION = 0.25  # of available RAM, for models pushed out of VRAM


def available_ram() -> int:
    """Bytes of RAM the kernel says can be used without swapping (MemAvailable), else total RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_free(device: torch.device) -> int:
    """Free bytes on the device now (RAM for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_ram()


def auto_device_budget(device: torch.device) -> int:
    """Device tier budget: free VRAM less a reserve for activations; on the CPU half the available RAM."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return max(0, int(free) - max(VRAM_RESERVE_MIN, int(total * VRAM_RESERVE_FRACTION)))
    return int(available_ram() * CPU_DEVICE_FRACTION)


def auto_ram_budget(device: torch.device) -> int:
    """RAM tier budget: a quarter of the available RAM beside a GPU; none on the CPU (see above)."""
    return int(available_ram() * RAM_TIER_FRACTION) if device.type != "cpu" else 0
