"""What `bench/gpu.py` measures besides request→result time: peak GPU memory of a process, UNet
FLOPs per step, one UNet step eager / CUDA-graph replay / channels-last, the SDXL VAE in fp32 and
bf16, torch.compile's build time, and pixel differences between two results."""

from __future__ import annotations

import copy
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from server.models.loader import LoadedModel
from server.pipelines.fastpath import FastOptions, UnetStep

# Dense fp16/bf16 matrix rate measured on an H200 of the device pool (8192³ bf16, random data): the floor.
PEAK_TFLOPS = 790.0


class PeakMemory:
    """Peak GPU memory of process `pid` as NVML sees it (allocator cache + CUDA context, what
    nvidia-smi shows), sampled every 20 ms; `window()` measures one stretch. None without NVML."""

    def __init__(self, pid: int) -> None:
        self.pid, self.scope, self._peak = pid, "n/a", 0
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._dev = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML (CPU run, or no nvidia-ml-py): memory is reported as n/a
            return
        self.scope = "process" if self._process_bytes() is not None else "device"
        threading.Thread(target=self._poll, daemon=True, name="bench-nvml").start()

    def _process_bytes(self) -> int | None:
        for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._dev):
            if p.pid == self.pid and p.usedGpuMemory:
                return int(p.usedGpuMemory)
        return None

    def _used(self) -> int:
        if self.scope == "process":
            return self._process_bytes() or 0
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._dev).used)  # pid not visible: the whole device

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, self._used())

    @contextmanager
    def window(self) -> Iterator[dict[str, Any]]:
        box: dict[str, Any] = {}
        if self.scope == "n/a":
            yield box
            return
        self._peak = self._used()
        yield box
        box["peak_gib"] = max(self._peak, self._used()) / 2**30

    def close(self) -> None:
        self._stop.set()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def per_call_ms(fn: Callable[[], Any], device: torch.device, n: int = 10, warmup: int = 3) -> float:
    """Median milliseconds of `fn`, after warm-up (CUDA events on the GPU; each call waited for)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            times.append(timed(fn, device)[0] * 1e3)
    return statistics.median(times)


def step_inputs(model: LoadedModel, batch: int, px: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Random inputs of one classifier-free-guided UNet step for `batch` images of px²."""
    cfg, dev, dt = model.unet.config, model.device, model.dtype
    n, g = 2 * batch, torch.Generator().manual_seed(0)
    x = torch.randn(n, cfg.in_channels, px // 8, px // 8, generator=g).to(dev, dt)
    kw: dict[str, Any] = {"encoder_hidden_states": torch.randn(n, 77, cfg.cross_attention_dim, generator=g).to(dev, dt)}
    if model.family.xl:
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        ids = torch.tensor([[px, px, 0, 0, px, px]], dtype=dt).expand(n, -1)
        embeds = torch.randn(n, pooled, generator=g).to(dev, dt)
        kw["added_cond_kwargs"] = {"text_embeds": embeds, "time_ids": ids.to(dev)}
    return x, torch.tensor(500.0, device=dev), kw


def unet_flops(model: LoadedModel, batch: int, px: int) -> int:
    """Floating-point operations of one CFG UNet step (torch's FLOP counter: matmuls, convs, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    x, t, kw = step_inputs(model, batch, px)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.unet(x, t, **kw)
    return int(counter.get_total_flops())


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm((a - b).float()) / torch.linalg.vector_norm(b.float()).clamp_min(1e-30))


@torch.no_grad()
def step_micro(model: LoadedModel, px: int) -> dict[str, Any]:
    """One CFG step (batch 1): eager, CUDA-graph replay, channels-last eager and replayed; output differences."""
    x, t, kw = step_inputs(model, 1, px)
    unet, dev = model.unet, model.device

    def eager() -> torch.Tensor:
        return unet(x, t, **kw).sample

    ref = eager()
    res: dict[str, Any] = {"finite": bool(torch.isfinite(ref).all()), "eager_ms": per_call_ms(eager, dev)}
    if dev.type != "cuda":
        return res
    graphs = UnetStep(unet, "graphs", FastOptions("graphs"))
    res["graphs_vs_eager_max_abs"] = float((graphs(x, t, **kw) - ref).abs().max())
    res["graphs_ms"] = per_call_ms(lambda: graphs(x, t, **kw), dev)
    unet.to(memory_format=torch.channels_last)  # the weights move: `graphs` recaptures on its next call
    try:
        res["channels_last_rel_diff"] = rel_diff(eager(), ref)
        res["channels_last_ms"] = per_call_ms(eager, dev)
        res["channels_last_graphs_ms"] = per_call_ms(lambda: graphs(x, t, **kw), dev)
    finally:
        unet.to(memory_format=torch.contiguous_format)
        torch.cuda.empty_cache()
    return res


@torch.no_grad()
def vae_micro(model: LoadedModel, px: int) -> dict[str, Any]:
    """Decode one px² image with the model's VAE as loaded, and (fp32 VAEs on CUDA) with a bf16 copy."""
    dev = model.device
    lat = torch.randn(1, 4, px // 8, px // 8, generator=torch.Generator().manual_seed(1)).to(dev)

    def decode(vae: Any, dtype: torch.dtype) -> torch.Tensor:
        return (vae.decode(lat.to(dtype)).sample.float() / 2 + 0.5).clamp(0, 1)

    ref = decode(model.vae, model.vae_dtype)
    res: dict[str, Any] = {"dtype": str(model.vae_dtype).removeprefix("torch.")}
    res["ms"] = per_call_ms(lambda: decode(model.vae, model.vae_dtype), dev, n=3, warmup=1)
    if dev.type == "cuda" and model.vae_dtype == torch.float32:
        vae16 = copy.deepcopy(model.vae).to(torch.bfloat16)
        out = decode(vae16, torch.bfloat16)
        d = ((out - ref).abs() * 255).round().amax(dim=1)  # per pixel, worst channel, in 1/255
        res["bf16_ms"] = per_call_ms(lambda: decode(vae16, torch.bfloat16), dev, n=3, warmup=1)
        res["bf16_max_diff"] = int(d.max())
        res["bf16_within_2"] = float((d <= 2).float().mean())
        del vae16
    return res


@torch.no_grad()
def compile_micro(model: LoadedModel, px: int) -> dict[str, Any]:
    """`--fast compile` on one CFG step: build (trace + inductor) seconds, then per-step milliseconds."""
    x, t, kw = step_inputs(model, 1, px)
    step = UnetStep(model.unet, "compile", FastOptions("compile"))
    build_s, out = timed(lambda: step(x, t, **kw), model.device)
    ref = model.unet(x, t, **kw).sample
    ms = per_call_ms(lambda: step(x, t, **kw), model.device)
    return {"build_s": build_s, "ms": ms, "rel_diff": rel_diff(out, ref)}


def pixel_diff(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Worst channel per pixel, in 1/255: its maximum and the share of pixels within 2."""
    d = np.abs(a[..., :3].astype(np.int16) - b[..., :3].astype(np.int16)).max(axis=-1)
    return {"max": int(d.max()), "within_2": float((d <= 2).mean()), "flat": bool(a[..., :3].std() < 1)}
