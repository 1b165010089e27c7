"""`sdbridge serve` (the websocket server) and `sdbridge make-test-model` (random-weight files: tiny, or full-size)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from ..app import Server, StartupError
from ..limits import Limits
from ..models.fullsize import FULL_SIZE_ARCHS, write_full_size
from ..models.registry import ModelManager
from ..models.testmodels import ARCHS, write_sd_checkpoint
from ..pipelines.fastpath import MODES, FastOptions, preparer, release, resolve
from ..workers.build import local_pool, parse_devices, ray_pool
from ..workers.cluster import RayUnavailable
from ..workers.config import WorkerConfig, visible_devices
from .options import add_command


def home() -> Path:
    """sdbridge's own folder: $SDBRIDGE_HOME, else the user cache dir."""
    return Path(os.environ.get("SDBRIDGE_HOME", Path.home() / ".cache" / "sdbridge"))


def demo_models_dir() -> Path:
    """Where the tiny demo model lives when no --models is given (made on first use)."""
    return home() / "demo-models"


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    models_dir = args.models
    if models_dir is None:
        models_dir = demo_models_dir()
        if not any(models_dir.glob("*.safetensors")):
            write_sd_checkpoint(models_dir, "sd15", name="demo-tiny-sd15")
        print(
            f"no --models given: serving the tiny random-weight demo model in {models_dir} (it draws noise)",
            file=sys.stderr,
        )
    elif not models_dir.is_dir():
        print(f"error: --models {models_dir} is not a folder", file=sys.stderr)
        return 2
    try:
        if args.devices:
            devices = parse_devices(args.devices)
        else:  # default: every visible GPU (one GPU: exactly the single-device server), else the CPU
            devices = [torch.device(args.device)] if args.device else visible_devices()
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.ray else devices[0]  # with --ray the gateway only lists models
    dtype = torch.float16 if device.type == "cuda" and not args.fp32 else torch.float32
    fast = FastOptions(args.fast, args.fast_buckets, args.channels_last, args.vae_bf16)
    try:
        # On a cluster each worker resolves `auto` on its own GPU.
        mode = fast.mode if args.ray else ", ".join(dict.fromkeys(resolve(fast.mode, dev) for dev in devices))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    gib = 1 << 30
    vram = None if args.vram_budget is None else int(args.vram_budget * gib)
    ram = None if args.ram_cache_gb is None else int(args.ram_cache_gb * gib)
    manager = ModelManager(
        models_dir,
        device,
        dtype,
        allow_pickle=args.allow_pickle,
        vram_budget=vram,
        ram_budget=ram,
        on_load=preparer(fast),
        on_release=release,
    )
    limits = Limits(
        max_pixels=args.max_pixels,
        max_message_bytes=args.max_message_mb << 20,
        image_cache_bytes=args.image_cache_mb << 20,
        live_interrupt_ms=args.live_interrupt_ms,
    )
    config = WorkerConfig(models_dir.resolve(), args.fp32, args.allow_pickle, fast, vram, ram)
    try:
        pool = ray_pool(args.ray, config, limits) if args.ray else local_pool(manager, config, devices, limits)
    except RayUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state_dir = args.state_dir or home() / "state"
    server = Server(manager, limits, token=args.token, state_dir=state_dir, allow_origins=args.allow_origin, pool=pool)
    cache = manager.cache
    where = (
        f"Ray cluster {args.ray}"
        if args.ray
        else "device" + "s" * (len(devices) > 1) + " " + ", ".join(map(str, devices))
    )
    print(
        f"sdbridge: {len(manager.entries)} model(s) in {models_dir}; {where}; UNet {mode}; model cache "
        f"{cache.device_budget / gib:.1f} GB on the device, {cache.ram_budget / gib:.1f} GB in RAM (per worker); "
        f"jobs journaled in {state_dir}; "
        f"listening on ws://{args.host}:{args.port}",
        file=sys.stderr,
    )
    try:
        asyncio.run(_serve_until_signal(server, args.host, args.port))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a platform without loop signal handlers (Windows)
        pass
    # Stopped: the journal is closed and every connection had its last events. The interpreter's own
    # teardown (torch, a worker thread still inside a step that did not return in time) can take many
    # seconds or abort, and nothing is left to save: leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _serve_until_signal(server: Server, host: str, port: int) -> None:
    """SIGTERM/SIGINT stop the server gracefully (running job requeued, journal flushed); a second one
    ends it at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # the second one: the journal is consistent at any moment, so just go
            print(f"sdbridge: {sig.name} again: stopping now", file=sys.stderr)
            os._exit(1)
        print(f"sdbridge: {sig.name}: stopping (again to stop at once)", file=sys.stderr)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises KeyboardInterrupt instead
            loop.add_signal_handler(sig, on_signal, sig)
    await server.run(host, port, stop=stop)


def cmd_make_test_model(args: argparse.Namespace) -> int:
    if args.full_size:
        if args.arch not in FULL_SIZE_ARCHS:
            print(f"error: --full-size makes {', '.join(FULL_SIZE_ARCHS)}, not {args.arch}", file=sys.stderr)
            return 2
        path = write_full_size(args.dir, args.arch, args.name, args.seed)
    else:
        path = ARCHS[args.arch](args.dir, args.name, args.seed)
    print(path)
    return 0


def register(sub: Any) -> None:
    p = add_command(sub, "serve", "run the websocket server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--models", type=Path, help="checkpoint folder, or an A1111/ComfyUI models/ tree")
    p.add_argument(
        "--token",
        default=os.environ.get("SDBRIDGE_TOKEN"),
        help="required from clients; mandatory for a non-loopback --host",
    )
    p.add_argument("--device", help="one device: cuda, cuda:1, cpu … (default: every visible GPU, else cpu)")
    p.add_argument(
        "--devices",
        metavar="LIST",
        help="one worker per device, e.g. cuda:0,cuda:1 (default: every visible GPU); cpu,cpu works for tests",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the workers on a Ray cluster (HOST:PORT, or auto: the one this host joined); one per GPU",
    )
    p.add_argument("--fp32", action="store_true", help="full precision on CUDA")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickled .ckpt (runs code in the file)")
    p.add_argument(
        "--fast",
        choices=MODES,
        default="auto",
        help="UNet fast path: graphs (CUDA graphs per shape), compile (torch.compile), off; "
        "auto = graphs on CUDA, off elsewhere. All are quality-neutral",
    )
    p.add_argument("--fast-buckets", type=int, default=8, help="shapes kept captured/compiled at once (LRU)")
    p.add_argument("--channels-last", action="store_true", help="UNet weights in channels-last layout (CUDA)")
    p.add_argument(
        "--vae-bf16", action="store_true", help="lossy: run SDXL-type VAEs in bf16 instead of fp32 (CUDA, faster)"
    )
    p.add_argument(
        "--vram-budget",
        type=float,
        metavar="GB",
        help="memory for loaded models on the device (default: free VRAM less a reserve; on the CPU half the RAM)",
    )
    p.add_argument(
        "--ram-cache-gb",
        type=float,
        metavar="GB",
        help="RAM for models pushed out of VRAM (default: a quarter of the RAM beside a GPU, 0 on the CPU)",
    )
    p.add_argument("--max-pixels", type=int, default=4096 * 4096)
    p.add_argument("--max-message-mb", type=int, default=256)
    p.add_argument(
        "--image-cache-mb", type=int, default=Limits.image_cache_bytes >> 20, help="uploads held by content hash"
    )
    p.add_argument(
        "--live-interrupt-ms",
        type=int,
        default=Limits.live_interrupt_ms,
        help="a running live frame this old stops at its next step when a newer frame of its client waits",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where accepted jobs and results are journaled, so a restart loses none "
        "(default: $SDBRIDGE_HOME/state, ~/.cache/sdbridge/state)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let browser pages from ORIGIN (e.g. http://localhost:3000) connect; repeatable. Default: none",
    )
    p.set_defaults(func=cmd_serve)

    p = add_command(sub, "make-test-model", "write a tiny random-weight checkpoint (produces noise; for tests/demos)")
    p.add_argument("dir", type=Path)
    p.add_argument("--arch", choices=sorted(ARCHS), default="sd15")
    p.add_argument("--name", help="file name without suffix (default tiny-ARCH)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--full-size",
        action="store_true",
        help="the real size (sd15 2.1 GB, sdxl 6.9 GB, sdxl-refiner 6.1 GB, fp16; for benchmarks)",
    )
    p.set_defaults(func=cmd_make_test_model)
