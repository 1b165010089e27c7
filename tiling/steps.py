"""The img2img step rule: how many sampler steps run at a denoising strength.

One definition for everything that counts steps: the server's schedule (`denoise.timesteps_for`
keeps the last `steps_run` timesteps), progress totals, result params and the cost model here.
"""

from __future__ import annotations


def steps_run(steps: int, strength: float) -> int:
    """Steps a pass of ``steps`` runs at ``strength``: ``steps * strength`` rounded to the nearest
    integer (Python's ``round``, halves to even), at least 1 and at most ``steps``.

    Rounding, not truncating: 20 steps at 0.38 run 8 (7.6), not 7.
    """
    return min(max(round(steps * strength), 1), steps)
