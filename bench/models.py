"""Model switching and throughput benchmark: direct loads, the model cache, base+refiner, batched sampling.

1. Loads of full-size random-weight SD1.5 and SDXL checkpoints (`make-test-model --full-size`,
   written to a temporary folder and deleted afterwards unless `--keep`), fp16, page cache warm and
   cold (dropped before each cold run), medians: the floor of reading the file, diffusers' own
   `from_single_file(torch_dtype=float16)` with the same offline config folder, and ours
   (`loader.load_single_file`). Both map the file and read it lazily, so "ready" also touches every
   weight page (and upcasts SDXL's VAE to fp32, which ours loads directly and diffusers' pipeline
   does before decoding).
2. Switch times through `ModelManager` (fp16): cold (page cache dropped), warm (evicted, the file
   in the page cache), cached in the RAM tier, resident.
3. Base + refiner: seconds spent getting models per job and files loaded, full-size SDXL base +
   refiner, ours against one resident model (main's policy: each job loads both, the next base job
   the base again); and real jobs' wall time on the tiny SDXL + refiner through the server.
4. Batch 4 against four batch-1 jobs on the tiny SD1.5 model through the real server: images/s.

    python bench/models.py [--dir DIR] [--keep] [--runs 3] [--skip-full] [--threads 1]

Prints the machine's load average with every part: the machine may be shared, rerun when high.
One torch thread by default: on a loaded machine, threads waiting on each other at every operator
make small models many times slower, which would measure the neighbours rather than the code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.client import Client  # noqa: E402
from server.embedded import start_server  # noqa: E402
from server.models import loader, reference  # noqa: E402
from server.models.fullsize import write_full_size  # noqa: E402
from server.models.registry import ModelManager  # noqa: E402
from server.models.testmodels import write_sd_checkpoint  # noqa: E402

CPU = torch.device("cpu")
F16 = torch.float16
GIB = 1 << 30


def load_avg() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def drop_caches() -> bool:
    """Drop the page cache (root only) so the next read comes from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def touch(modules: Iterable[torch.nn.Module]) -> None:
    """Read one value per 4 KiB page of every weight (lazily mapped loads read here)."""
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                float(p.reshape(-1)[:: max(1, 4096 // p.element_size())].float().sum())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def read_file(path: Path) -> None:
    with path.open("rb", buffering=0) as f:
        buf = bytearray(1 << 24)
        while f.readinto(buf):
            pass


def diffusers_parts(path: Path) -> list[torch.nn.Module]:
    pipe = reference.from_single_file(path, F16)
    tes = [getattr(pipe, n, None) for n in ("text_encoder", "text_encoder_2")]
    return [pipe.unet, pipe.vae, *(te for te in tes if te is not None)]


def our_parts(path: Path) -> list[torch.nn.Module]:
    model = loader.load_single_file(path, "x", CPU, F16, False)
    return [model.unet, model.vae, *model.text_encoders]


def load_and_ready(load: Callable[[Path], list[torch.nn.Module]], path: Path) -> tuple[float, float]:
    """Seconds to load, and to have every weight in memory in the dtype it runs in (VAE fp32 for SDXL)."""
    t_load, parts = timed(lambda: load(path))

    def ready() -> None:
        vae = parts[1]
        if vae.config.get("force_upcast", False) and vae.dtype != torch.float32:
            vae.to(torch.float32)  # what diffusers' SDXL pipeline does before decoding; ours loads it so
        touch(parts)

    t_ready, _ = timed(ready)
    parts.clear()
    gc.collect()
    return t_load, t_load + t_ready


def loads(path: Path, runs: int) -> list[str]:
    out = [f"### Loads: {path.name} ({path.stat().st_size / 1e9:.2f} GB), fp16, medians of {runs} — {load_avg()}"]
    out.append(
        "| page cache | read file (floor) | diffusers load | diffusers ready | ours load | ours ready "
        "| ours/diffusers (ready) | ours ready/floor |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for cold in (False, True):
        r: dict[str, list[float]] = {k: [] for k in ("read", "dl", "dr", "ol", "or")}
        can = True
        if not cold:
            read_file(path)  # warm: the file is in the page cache before anything is timed
        for run in range(runs):
            order = ["read", "diffusers", "ours"]
            order = order[run % 3 :] + order[: run % 3]  # rotate: no part always goes first
            for what in order:
                if cold:
                    can = drop_caches() and can
                if what == "read":
                    r["read"].append(timed(lambda: read_file(path))[0])
                else:
                    a, b = load_and_ready(diffusers_parts if what == "diffusers" else our_parts, path)
                    r["dl" if what == "diffusers" else "ol"].append(a)
                    r["dr" if what == "diffusers" else "or"].append(b)
        m = {k: med(v) for k, v in r.items()}
        state = ("cold" if can else "cold NOT dropped (no root)") if cold else "warm"
        out.append(
            f"| {state} | {m['read']:.2f} s | {m['dl']:.2f} s | {m['dr']:.2f} s | {m['ol']:.2f} s | {m['or']:.2f} s "
            f"| {m['or'] / m['dr']:.2f} | {m['or'] / m['read']:.2f} |"
        )
    out.append(f"(after: {load_avg()})")
    return out


def switches(root: Path, target: str, other: str, runs: int) -> list[str]:
    """Seconds `ModelManager.get(target)` takes from each state (a job ends between gets)."""
    probe = {n: loader.estimate_bytes(root / f"{n}.safetensors", F16) for n in (target, other)}
    one = max(probe.values()) + GIB // 4  # room for one model on the "device", one in RAM

    def get(mm: ModelManager, name: str) -> float:
        dt, _ = timed(lambda: mm.get(name))
        mm.end_job()
        return dt

    times: dict[str, list[float]] = {"cold": [], "warm": [], "RAM tier": [], "resident": []}
    for _ in range(runs):
        cold_ok = drop_caches()
        mm = ModelManager(root, CPU, F16, vram_budget=one, ram_budget=one)
        times["cold"].append(get(mm, target) if cold_ok else float("nan"))
        times["resident"].append(get(mm, target))
        get(mm, other)  # pushes the target to the RAM tier
        times["RAM tier"].append(get(mm, target))
        mm = ModelManager(root, CPU, F16, vram_budget=one, ram_budget=0)
        get(mm, target), get(mm, other)  # the target is dropped; its file stays in the page cache
        times["warm"].append(get(mm, target))
        del mm
        gc.collect()
    cells = " | ".join(f"{med(v) * 1000:.1f} ms" if med(v) < 1 else f"{med(v):.2f} s" for v in times.values())
    return [f"| {target} | {cells} |"]


def refiner_jobs(root: Path) -> list[str]:
    """Model acquisition per job (seconds in `get`, files loaded) for base, base+refiner sequences."""
    base, refiner = "full-sdxl", "full-sdxl-refiner"
    sizes = [loader.estimate_bytes(root / f"{n}.safetensors", F16) for n in (base, refiner)]
    policies = {
        "ours (both fit: kept together)": ModelManager(root, CPU, F16, vram_budget=sum(sizes) + GIB, ram_budget=0),
        "one resident model (main)": ModelManager(root, CPU, F16, vram_budget=max(sizes) + GIB // 4, ram_budget=0),
    }
    jobs = [("base+refiner", True), ("base+refiner", True), ("base", False), ("base+refiner", True)]
    out = ["| policy | " + " | ".join(f"job {i + 1}: {j}" for i, (j, _) in enumerate(jobs)) + " |"]
    out.append("|---|" + "---|" * len(jobs))
    for label, mm in policies.items():
        cells = []
        for _, with_refiner in jobs:
            before = mm.cache.loads
            t0 = time.perf_counter()
            mm.get(base)
            if with_refiner:
                mm.get_refiner(refiner)
            mm.end_job()
            cells.append(f"{time.perf_counter() - t0:.2f} s, {mm.cache.loads - before} loads")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
        mm.cache.clear()
    return out


async def _run(url: str, params: dict[str, Any]) -> dict[str, Any]:
    async with await Client.connect(url) as client:
        return await client.run("generate", params)


def tiny_jobs(runs: int) -> list[str]:
    """Real jobs through the server on tiny models: refiner overhead and batch throughput."""
    out = [f"### Real jobs, tiny models through the server (CPU, fp32), medians of {runs} — {load_avg()}"]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for arch_name in ("sd15", "sdxl", "sdxl-refiner"):
            write_sd_checkpoint(root, arch_name)
        srv = start_server(root)
        try:
            xl = {"model": "tiny-sdxl", "prompt": "a lighthouse", "steps": 20, "width": 128, "height": 128, "seed": 1}
            plain = xl
            refined = xl | {"refiner": "tiny-sdxl-refiner", "refiner_switch": 0.8}
            asyncio.run(_run(srv.url, refined))  # warm-up: both loaded
            t = {"base": [], "base+refiner": []}
            loads0 = srv.server.models.cache.loads
            for _ in range(runs):
                t["base"].append(timed(lambda: asyncio.run(_run(srv.url, plain)))[0])
                t["base+refiner"].append(timed(lambda: asyncio.run(_run(srv.url, refined)))[0])
            loads = srv.server.models.cache.loads - loads0
            out.append(
                f"tiny-sdxl 128², 20 steps: base-only {med(t['base']):.2f} s, base+refiner (switch 0.8) "
                f"{med(t['base+refiner']):.2f} s, overhead {med(t['base+refiner']) - med(t['base']):+.2f} s; "
                f"files loaded during the {2 * runs} timed jobs: {loads}"
            )
            sd = {"model": "tiny-sd15", "prompt": "a lighthouse", "steps": 20, "width": 64, "height": 64}
            asyncio.run(_run(srv.url, sd | {"seed": 1}))
            one, four = [], []
            for r in range(runs):
                four.append(timed(lambda r=r: asyncio.run(_run(srv.url, sd | {"seed": 10 * r, "batch": 4})))[0])
                singles = [sd | {"seed": 10 * r + i} for i in range(4)]
                one.append(timed(lambda singles=singles: [asyncio.run(_run(srv.url, p)) for p in singles])[0])
            out.append(
                f"tiny-sd15 64², 20 steps, Euler a: batch 4 {4 / med(four):.2f} images/s ({med(four):.2f} s), "
                f"4 × batch 1 {4 / med(one):.2f} images/s ({med(one):.2f} s): ratio {med(one) / med(four):.2f}"
            )
        finally:
            srv.close()
    out.append(f"(after: {load_avg()})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="folder for the full-size files (kept if they were already there)")
    ap.add_argument("--keep", action="store_true", help="keep the full-size files written by this run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-full", action="store_true", help="only the tiny-model parts")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {load_avg()}")
    for line in tiny_jobs(args.runs):
        print(line)
    if args.skip_full:
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="sdbridge-full-"))
    written = []
    for name in ("sd15", "sdxl", "sdxl-refiner"):
        if not (root / f"full-{name}.safetensors").exists():
            print(f"writing full-{name} …", flush=True)
            written.append(write_full_size(root, name))
    try:
        for name in ("sd15", "sdxl"):
            for line in loads(root / f"full-{name}.safetensors", args.runs):
                print(line, flush=True)
        print(f"### Switch times through ModelManager, fp16, medians of {args.runs} — {load_avg()}")
        print("| model | cold (page cache dropped) | warm (evicted, file cached) | RAM tier | resident |")
        print("|---|---|---|---|---|")
        for target, other in (("full-sd15", "full-sdxl"), ("full-sdxl", "full-sd15")):
            for line in switches(root, target, other, args.runs):
                print(line, flush=True)
        print(f"### Base + refiner, full-size SDXL, model acquisition per job — {load_avg()}")
        for line in refiner_jobs(root):
            print(line, flush=True)
        print(f"(after: {load_avg()})")
    finally:
        if not args.keep:
            for path in written:
                path.unlink()
            if args.dir is None:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
