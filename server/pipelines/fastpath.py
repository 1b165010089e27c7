"""The UNet call of every denoising step, eager or on a fast path (`UnetStep`).

`sdbridge serve --fast` picks the mode; every mode is quality-neutral (same weights, same dtype):

- `eager`: the plain module call (what `off` means, and what `auto` means off CUDA: CPU users and CI
  see no change at all).
- `graphs` (`auto` on CUDA): each distinct input signature — a *bucket*: shapes, dtypes and devices
  of the latents, timestep and conditioning — is captured once as a CUDA graph of the eager UNet and
  replayed from then on. The same kernels run on the same data, minus the launch cost of ~1000 small
  kernels per step, which is what bounds a fp16 UNet step on a fast GPU. Weights patched in place
  (LoRA) are seen by the replay; weights moved to new memory (offload, dtype change) make the bucket
  recapture. Buckets are built on first use, at most `max_buckets`, least recently used dropped.
- `compile`: `torch.compile` (inductor; on CUDA its `reduce-overhead` mode, i.e. CUDA graphs of fused
  kernels), one compiled variant per bucket; shapes past `max_buckets` run eager rather than recompile.

Each bucket's build is logged with its time, so the cost of a first request is visible.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..models.loader import LoadedModel

log = logging.getLogger(__name__)

MODES = ("auto", "off", "graphs", "compile")
EXTRAS_KEY = "unet_step"
Path_ = tuple[str, ...]
Key = tuple[Any, ...]


@dataclass(frozen=True)
class FastOptions:
    """What `sdbridge serve` was asked for; `resolve` says what it means on a device."""

    mode: str = "off"
    max_buckets: int = 8
    channels_last: bool = False  # UNet weights in NHWC (cuDNN's native layout for fp16 convs)
    vae_bf16: bool = False  # opt-in, lossy: SDXL-type VAEs (fp32 by default) in bf16 instead
    backend: str = "inductor"  # torch.compile backend ("eager" traces with dynamo only: the tests use it)


def resolve(mode: str, device: torch.device) -> str:
    """`mode` on `device` → 'eager', 'graphs' or 'compile'. Raises ValueError for what cannot run there."""
    if mode not in MODES:
        raise ValueError(f"unknown fast mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return "eager"
    if mode == "auto":
        return "graphs"
    if mode == "graphs" and device.type != "cuda":
        raise ValueError(f"--fast graphs needs a CUDA device, not {device}; use --fast compile or off")
    return mode


# --- inputs as flat leaves --------------------------------------------------------------------------


def flatten(x: torch.Tensor, t: torch.Tensor, kw: dict[str, Any]) -> list[tuple[Path_, Any]]:
    """(path, value) for the sample, the timestep and every (nested) keyword argument, in a fixed order."""
    out: list[tuple[Path_, Any]] = [(("sample",), x), (("timestep",), t)]

    def walk(prefix: Path_, d: dict[str, Any]) -> None:
        for k in sorted(d):
            v = d[k]
            if isinstance(v, dict):
                walk((*prefix, k), v)
            else:
                out.append(((*prefix, k), v))

    walk((), kw)
    return out


def unflatten(leaves: list[tuple[Path_, Any]]) -> tuple[Any, Any, dict[str, Any]]:
    """Inverse of `flatten`: (x, t, kwargs)."""
    kw: dict[str, Any] = {}
    for path, v in leaves[2:]:
        d = kw
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = v
    return leaves[0][1], leaves[1][1], kw


def signature(leaves: list[tuple[Path_, Any]]) -> Key | None:
    """The bucket key: tensors by shape/dtype/device, plain scalars by value; None if an input can't be keyed."""
    parts: list[Any] = []
    for path, v in leaves:
        if isinstance(v, torch.Tensor):
            parts.append((path, tuple(v.shape), v.dtype, v.device))
        elif v is None or isinstance(v, bool | int | float | str):
            parts.append((path, v))
        else:
            return None
    return tuple(parts)


def describe(key: Key) -> str:
    """'sample 2x4x64x64 float16, timestep float32, encoder_hidden_states 2x77x768 float16, …' for logs."""
    out = []
    for part in key:
        name = ".".join(part[0])
        if len(part) == 4:
            shape = "x".join(map(str, part[1])) or "scalar"
            out.append(f"{name} {shape} {str(part[2]).removeprefix('torch.')}")
        else:
            out.append(f"{name}={part[1]!r}")
    return ", ".join(out)


# --- buckets ------------------------------------------------------------------------------------------


class _Bucket:
    """One built variant of the UNet call for one input signature."""

    uses = 0
    seconds = 0.0  # build time

    def run(self, leaves: list[tuple[Path_, Any]]) -> torch.Tensor:
        raise NotImplementedError


class _Eager(_Bucket):
    """A signature whose build failed: it runs eager from then on (logged once)."""

    def __init__(self, unet: Any) -> None:
        self.unet = unet

    def run(self, leaves: list[tuple[Path_, Any]]) -> torch.Tensor:
        x, t, kw = unflatten(leaves)
        return self.unet(x, t, **kw).sample


class _Graph(_Bucket):
    """The eager UNet captured as a CUDA graph on static input buffers (copied into, then replayed)."""

    def __init__(self, unet: Any, leaves: list[tuple[Path_, Any]], pool: Any) -> None:
        # Static inputs live outside the graphs' memory pool, so no capture can reuse their memory.
        self.static = [(p, v.clone() if isinstance(v, torch.Tensor) else v) for p, v in leaves]
        x, t, kw = unflatten(self.static)
        dev = x.device
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # warm-up: library handles and workspaces are made outside capture
            unet(x, t, **kw)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the event-loop thread may query the device (welcome) while the worker captures.
        with torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
            self.out = unet(x, t, **kw).sample

    def run(self, leaves: list[tuple[Path_, Any]]) -> torch.Tensor:
        for (_, dst), (_, src) in zip(self.static, leaves, strict=True):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        self.graph.replay()
        # Graphs share one pool: a later replay of another bucket may reuse this output's memory.
        return self.out.clone()


class _Compiled(_Bucket):
    """A torch.compile variant; built by running it once (that is when dynamo traces and inductor compiles)."""

    def __init__(self, fn: Callable[..., Any], cuda_graphs: bool, leaves: list[tuple[Path_, Any]]) -> None:
        self.fn, self.cuda_graphs = fn, cuda_graphs
        self.run(leaves)

    def run(self, leaves: list[tuple[Path_, Any]]) -> torch.Tensor:
        x, t, kw = unflatten(leaves)
        if self.cuda_graphs:  # one inference step per call: lets the graph trees reuse their memory
            torch.compiler.cudagraph_mark_step_begin()
        return self.fn(x, t, **kw).sample.clone()


def _weight_picks(module: Any, n: int = 8) -> list[torch.Tensor]:
    params = list(module.parameters())
    return params[:: max(1, len(params) // n)] + params[-1:] if params else []


class UnetStep:
    """`step(x, t, **unet_kwargs) -> eps`: the UNet's `.sample` for one step, eager or from a bucket."""

    def __init__(self, unet: Any, mode: str = "eager", options: FastOptions | None = None) -> None:
        if mode not in ("eager", "graphs", "compile"):
            raise ValueError(f"UnetStep mode must be resolved first (eager, graphs, compile), not {mode!r}")
        self.unet, self.mode, self.options = unet, mode, options or FastOptions()
        self.buckets: OrderedDict[Key, _Bucket] = OrderedDict()
        self.builds = 0  # buckets built over this wrapper's life (a recapture counts again)
        self._picks = _weight_picks(unet)
        self._weights = self._fingerprint()
        self._pool: Any = None
        self._compiled: Any = None

    @property
    def capacity(self) -> int:
        return max(1, self.options.max_buckets)

    def __call__(self, x: torch.Tensor, t: torch.Tensor | float, **kw: Any) -> torch.Tensor:
        if self.mode == "eager":
            return self.unet(x, t, **kw).sample
        if not isinstance(t, torch.Tensor) or t.device != x.device:
            t = torch.as_tensor(t, device=x.device)  # a host scalar would be baked into a graph
        leaves = flatten(x, t, kw)
        key = signature(leaves)
        with torch.no_grad():
            bucket = self._bucket(key, leaves) if key is not None else None
            if bucket is None:
                return self.unet(x, t, **kw).sample
            bucket.uses += 1
            return bucket.run(leaves)

    def release(self) -> None:
        """Drop every bucket and the graphs' memory pool (e.g. before the model leaves the GPU)."""
        self.buckets.clear()
        self._pool = None

    def report(self) -> list[dict[str, Any]]:
        """The buckets now held, least recently used first: what they key on, build seconds, uses."""
        return [
            {"key": describe(k), "kind": type(b).__name__.strip("_").lower(), "seconds": b.seconds, "uses": b.uses}
            for k, b in self.buckets.items()
        ]

    # --- internals ------------------------------------------------------------------------------------

    def _fingerprint(self) -> tuple[int, ...]:
        return tuple(p.data_ptr() for p in self._picks)

    def _bucket(self, key: Key, leaves: list[tuple[Path_, Any]]) -> _Bucket | None:
        weights = self._fingerprint()
        if weights != self._weights:  # the weights moved (offload, .to()): a graph would read stale memory
            log.info("fast path: UNet weights moved; dropping %d bucket(s)", len(self.buckets))
            self.buckets.clear()
            self._weights = weights
        bucket = self.buckets.get(key)
        if bucket is not None:
            self.buckets.move_to_end(key)
            return bucket
        if len(self.buckets) >= self.capacity:
            if self.mode == "compile":
                return None  # recompiling without end costs more than eager: new shapes run eager
            self.buckets.popitem(last=False)
        bucket = self._build(key, leaves)
        self.buckets[key] = bucket
        return bucket

    def _build(self, key: Key, leaves: list[tuple[Path_, Any]]) -> _Bucket:
        t0 = time.perf_counter()
        try:
            bucket = self._graph(leaves) if self.mode == "graphs" else self._compile(leaves)
        except Exception as exc:  # a model that cannot be captured still runs, eager, and says why
            log.warning("fast path: %s failed for [%s]; this shape runs eager: %s", self.mode, describe(key), exc)
            return _Eager(self.unet)
        if leaves[0][1].device.type == "cuda":
            torch.cuda.synchronize(leaves[0][1].device)  # honest build time; once per bucket, not per step
        bucket.seconds = time.perf_counter() - t0
        self.builds += 1
        log.info(
            "fast path: %s bucket %d/%d built in %.2f s [%s]",
            self.mode,
            len(self.buckets) + 1,
            self.capacity,
            bucket.seconds,
            describe(key),
        )
        return bucket

    def _graph(self, leaves: list[tuple[Path_, Any]]) -> _Bucket:
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        return _Graph(self.unet, leaves, self._pool)

    def _compile(self, leaves: list[tuple[Path_, Any]]) -> _Bucket:
        cuda = next(iter(self.unet.parameters())).device.type == "cuda"
        if self._compiled is None:
            inductor = self.options.backend == "inductor"
            mode = "reduce-overhead" if cuda and inductor else None
            self._compiled = torch.compile(self.unet, backend=self.options.backend, mode=mode, dynamic=False)
        return _Compiled(self._compiled, cuda and self.options.backend == "inductor", leaves)


# --- per model -----------------------------------------------------------------------------------------


def for_model(model: LoadedModel) -> UnetStep:
    """The model's step wrapper: the one `prepare` made, or an eager one for a model never prepared."""
    step = model.extras.get(EXTRAS_KEY)
    if not isinstance(step, UnetStep) or step.unet is not model.unet:
        mode, options = (step.mode, step.options) if isinstance(step, UnetStep) else ("eager", None)
        step = UnetStep(model.unet, mode, options)
        model.extras[EXTRAS_KEY] = step
    return step


def prepare(model: LoadedModel, options: FastOptions) -> UnetStep:
    """Set `model` up for `options` (called once per load): layouts, the VAE option, the step wrapper."""
    mode = resolve(options.mode, model.device)
    cuda = model.device.type == "cuda"
    if options.channels_last and cuda:
        model.unet.to(memory_format=torch.channels_last)
    upcast = model.vae_dtype == torch.float32 and model.dtype == torch.float16
    if options.vae_bf16 and upcast and cuda and torch.cuda.is_bf16_supported():
        # bf16 has fp32's exponent range, so the SDXL VAE cannot overflow to NaN as in fp16; it rounds more.
        model.vae.to(torch.bfloat16)
        model.vae_dtype = torch.bfloat16
    step = UnetStep(model.unet, mode, options)
    model.extras[EXTRAS_KEY] = step
    attn = sorted({type(p).__name__ for p in model.unet.attn_processors.values()})
    log.info(
        "fast path for %s: %s (asked %s), attention %s, channels_last %s, VAE %s",
        model.name,
        mode,
        options.mode,
        "/".join(attn),
        options.channels_last and cuda,
        str(model.vae_dtype).removeprefix("torch."),
    )
    return step


def release(model: LoadedModel) -> None:
    """The `ModelManager(on_release=…)` hook: a model leaving the device gives back its graphs' memory."""
    step = model.extras.get(EXTRAS_KEY)
    if isinstance(step, UnetStep):
        step.release()


def preparer(options: FastOptions) -> Callable[[LoadedModel], None]:
    """The `ModelManager(on_load=…)` hook for `options`."""

    def on_load(model: LoadedModel) -> None:
        prepare(model, options)

    return on_load
