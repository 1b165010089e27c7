"""GPU benchmark in one command: our server (its fast path, request→result through the websocket)
against plain diffusers eager on the same weights and seeds, in the same run.

    python -m bench.gpu --out DIR            # CUDA: full-size random-weight SD1.5 + SDXL checkpoints
    python -m bench.gpu --tiny --out DIR     # CPU smoke run: tiny models, small sizes (not GPU figures)

1. checkpoints (`bench/gpu_setup.py`); 2. `sdbridge serve --fast MODE` as a child process: every job
   below, its first request timed apart from the repeats, the server's peak GPU memory (NVML);
3. in this process, on the same files: our eager path (an embedded server without the fast path) and
   diffusers' pipelines assembled from the modules that server loaded (`bench/gpu_baseline.py`);
4. per model: UNet FLOPs per step, one step eager / CUDA-graph replay / channels-last, the VAE in fp32
   and bf16, optionally torch.compile's build time (`bench/gpu_measure.py`).
Prints a Markdown table (ratios diffusers/ours, it/s, TFLOP/s against the floor, memory, pixel
differences fast vs eager and ours vs diffusers), the issue's targets met or not, and the fast path's
bucket log; writes everything to DIR/gpu-bench.json. Stages that would pass `--budget-s` are skipped
and said so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_baseline import Baseline  # noqa: E402
from bench.gpu_measure import (  # noqa: E402
    PEAK_TFLOPS,
    PeakMemory,
    compile_micro,
    pixel_diff,
    step_micro,
    timed,
    unet_flops,
    vae_micro,
)
from bench.gpu_report import report  # noqa: E402
from bench.gpu_setup import FULL, TINY, Scale, make_checkpoint, photo, rgba8, selection, serve  # noqa: E402
from server.client import Client  # noqa: E402
from server.embedded import start_server  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on the moon, detailed, sharp focus"
NEGATIVE = "blurry, low quality"
SEED, CFG = 1234, 7.0


@dataclass
class Job:
    label: str
    family: str  # sd15 | sdxl | "" (no model)
    kind: str
    params: dict[str, Any]
    images: dict[str, Any] = field(default_factory=dict)
    steps: int = 0  # UNet steps per image (it/s, FLOPs); 0: not a plain generate
    batch: int = 1
    px: int = 0
    repeats: int = 3
    baseline: bool = False  # diffusers runs the same job
    eager: bool = False  # our eager path runs it too (pixel difference fast vs eager)


def jobs(scale: Scale) -> list[Job]:
    gen = {"prompt": PROMPT, "negative": NEGATIVE, "seed": SEED, "cfg": CFG, "sampler": "Euler"}
    gen |= {"result_format": "rgba8"}  # raw pixels: no PNG encode on either side of the comparison
    out: list[Job] = []
    r = scale.repeats
    for fam, name, px, steps in (
        ("sd15", "SD1.5", scale.sd15_px, scale.sd15_steps),
        ("sdxl", "SDXL", scale.sdxl_px, scale.sdxl_steps),
    ):
        p = gen | {"model": f"bench-{fam}", "steps": steps}
        for b in (1, 4):
            size = {"width": px, "height": px, "batch": b}
            label = f"{name} {px}² {steps} steps b{b}"
            reps = r if b == 1 else max(1, r - 1)
            out.append(Job(label, fam, "generate", p | size, {}, steps, b, px, reps, baseline=True, eager=True))
        if fam == "sd15":
            imgs = {"image": rgba8(photo(px)), "mask": selection(px)}
            out.append(Job(f"SD1.5 inpaint {px}² selection", fam, "inpaint", p, imgs, repeats=r, eager=True))
        else:
            src = scale.upscale_from
            up = p | {"strength": 0.35, "scale": 2}
            label = f"SDXL upscale {src}²→{2 * src}² at 0.35"
            out.append(Job(label, fam, "upscale", up, {"image": rgba8(photo(src))}, repeats=1))
    rt = scale.roundtrip_px
    out.append(Job(f"{rt}² round trip (echo)", "", "echo", {"result_format": "rgba8"}, {"image": rgba8(photo(rt))}))
    return out


def pixels(rect: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(rect["data"], np.uint8).reshape(rect["h"], rect["w"], 4)


async def _requests(url: str, todo: list[Job], mem: PeakMemory, repeats: int | None, log: list[str]) -> dict[str, Any]:
    """Each job's first request, then its timed repeats, over one connection (as an editor keeps one)."""
    out: dict[str, Any] = {}
    async with await Client.connect(url, name="bench-gpu") as client:
        for job in todo:
            row: dict[str, Any] = {}
            out[job.label] = row
            try:
                with mem.window() as box:
                    times = []
                    for i in range(1 + (job.repeats if repeats is None else min(repeats, job.repeats))):
                        t0 = time.perf_counter()
                        res = await client.run(job.kind, job.params, job.images)
                        images = [pixels(rect) for rect in res["images"]]
                        times.append(time.perf_counter() - t0)
                        if i == 0:
                            row["first_s"] = times.pop()
                row |= {"times": times, "params": _small(res["params"]), "images": images} | box
            except Exception as exc:  # one failing job is reported; the others still run
                row["error"] = f"{type(exc).__name__}: {exc}"
                log.append(f"{job.label}: {row['error']}")
    return out


def _small(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("prompt", "negative")}


class Run:
    """One benchmark run: its scale, device, deadline, and everything measured so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.scale = args, TINY if args.tiny else FULL
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.deadline = time.monotonic() + (args.budget_s or (3600 if args.tiny else 420))
        self.jobs = jobs(self.scale)
        self.notes: list[str] = []
        self.data: dict[str, Any] = {"meta": self._meta(), "ours": {}, "eager": {}, "diffusers": {}, "micro": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def skip(self, what: str, need_s: float) -> bool:
        if self.left() >= need_s:
            return False
        self.notes.append(f"skipped {what}: {self.left():.0f} s of the --budget-s left, it needs ~{need_s:.0f} s")
        return True

    def _meta(self) -> dict[str, Any]:
        import diffusers

        dev = self.device
        gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
        return {
            "date": time.strftime("%Y-%m-%d"),
            "device": f"{dev} ({gpu})",
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "python": platform.python_version(),
            "fast": self.args.fast,
            "tiny": self.scale.tiny,
            "command": " ".join(["python -m bench.gpu", *sys.argv[1:]]),
        }

    # --- stages ---------------------------------------------------------------------------------------

    def build(self, models: Path) -> None:
        made, own, dev = {}, self.args.own_checkpoints, self.device
        for fam in ("sd15", "sdxl"):
            seconds, (_, how) = timed(lambda f=fam: make_checkpoint(models, f, self.scale, dev, own), dev)
            made[fam] = {"how": how, "seconds": round(seconds, 1)}
            print(f"checkpoint {fam}: {how} in {seconds:.1f} s", flush=True)
        self.data["meta"]["checkpoints"] = made

    def ours(self, models: Path, out: Path) -> None:
        log = out / "serve.log"
        with serve(models, log, self.device, self.args.fast) as srv:
            mem = PeakMemory(srv.proc.pid)
            try:
                self.data["ours"] = asyncio.run(_requests(srv.url, self.jobs, mem, None, self.notes))
            finally:
                mem.close()
            self.data["meta"]["memory"] = mem.scope
        text = log.read_text(errors="replace")
        self.data["buckets"] = [ln.split(": ", 1)[-1] for ln in text.splitlines() if "fast path" in ln]

    def reference(self, models: Path) -> None:
        """Our eager path and diffusers in this process, family by family, on the same loaded modules."""
        running = start_server(models, device=self.device)  # no fast path: the eager UNet call
        mem = PeakMemory(os.getpid())
        try:
            for fam, need_s in (("sd15", 45), ("sdxl", 120)):
                if self.skip(f"the eager/diffusers/micro runs of {fam}", need_s):
                    continue
                mine = [j for j in self.jobs if j.family == fam and j.eager]
                self.data["eager"] |= asyncio.run(_requests(running.url, mine, mem, 1, self.notes))
                model = running.server.models.get(f"bench-{fam}")  # resident: the server loaded it
                self._diffusers(model, [j for j in self.jobs if j.family == fam and j.baseline], mem)
                try:
                    self._micro(fam, model)
                except Exception as exc:
                    self.notes.append(f"micro-benchmarks of {fam}: {type(exc).__name__}: {exc}")
                    traceback.print_exc()
        finally:
            mem.close()
            running.close()

    def _diffusers(self, model: Any, todo: list[Job], mem: PeakMemory) -> None:
        base = Baseline(model, PROMPT, NEGATIVE)
        try:
            for job in todo:
                row: dict[str, Any] = {}
                self.data["diffusers"][job.label] = row

                def go(job: Job = job) -> list[np.ndarray]:
                    return base.generate(SEED, job.batch, job.px, job.steps, CFG)

                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                with mem.window() as box:
                    row["first_s"], _ = timed(go, self.device)
                    runs = [timed(go, self.device) for _ in range(job.repeats)]
                row |= {"times": [t for t, _ in runs], "images": runs[-1][1]} | box
        except Exception as exc:
            self.notes.append(f"diffusers: {type(exc).__name__}: {exc}")
        finally:
            base.close()

    def _micro(self, fam: str, model: Any) -> None:
        px = self.scale.sd15_px if fam == "sd15" else self.scale.sdxl_px
        micro: dict[str, Any] = {"flops_per_step": unet_flops(model, 1, px)}
        self.data["micro"][fam] = micro
        if self.skip(f"the step/VAE micro-benchmarks of {fam}", 30):
            return
        micro["step"] = step_micro(model, px)
        micro["vae"] = vae_micro(model, px)
        if self.args.compile and fam == "sd15" and not self.skip("torch.compile's build time", 240):
            micro["compile"] = compile_micro(model, px)

    # --- results --------------------------------------------------------------------------------------

    def diffs(self) -> None:
        """Pixel differences: our fast path vs our eager path, our eager path vs diffusers (same seeds)."""
        ours, eager, diff = self.data["ours"], self.data["eager"], self.data["diffusers"]
        for job in self.jobs:
            a, e, d = ours.get(job.label, {}), eager.get(job.label, {}), diff.get(job.label, {})
            if "images" in a and "images" in e:
                a["fast_vs_eager"] = _worst([pixel_diff(x, y) for x, y in zip(a["images"], e["images"], strict=True)])
            if "images" in e and "images" in d:
                e["vs_diffusers"] = _worst([pixel_diff(x, y) for x, y in zip(e["images"], d["images"], strict=True)])

    def save(self, out: Path) -> None:
        def plain(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items() if k != "images"}
            return [plain(x) for x in v] if isinstance(v, list) else v

        self.data["notes"] = self.notes
        (out / "gpu-bench.json").write_text(json.dumps(plain(self.data), indent=1, default=str))


def _worst(diffs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "max": max(d["max"] for d in diffs),
        "within_2": min(d["within_2"] for d in diffs),
        "flat": any(d["flat"] for d in diffs),
    }


def median(row: dict[str, Any]) -> float | None:
    return statistics.median(row["times"]) if row.get("times") else None


def main() -> int:
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the embedded server's loads would print progress bars
    diffusers_logging.disable_progress_bar()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny models and sizes (numbers mean nothing)")
    ap.add_argument("--out", type=Path, default=None, help="folder for gpu-bench.json and serve.log")
    ap.add_argument("--models", type=Path, default=None, help="folder for the checkpoints (default: a temporary one)")
    ap.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    ap.add_argument("--fast", default="auto", help="the server's --fast mode")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile's build of the SD1.5 step")
    ap.add_argument(
        "--budget-s", type=float, help="skip optional stages that would run past this (default 420; 3600 with --tiny)"
    )
    ap.add_argument("--own-checkpoints", action="store_true", help="build full-size checkpoints here, not via the CLI")
    args = ap.parse_args()
    run = Run(args)
    with tempfile.TemporaryDirectory(prefix="sdbridge-bench-") as tmp:
        out = args.out or Path(tmp) / "out"
        models = args.models or Path(tmp) / "models"
        out.mkdir(parents=True, exist_ok=True)
        for stage in (lambda: run.build(models), lambda: run.ours(models, out), lambda: run.reference(models)):
            try:  # one device run is all there may be: a failed stage is reported, the rest still runs
                stage()
            except Exception as exc:
                run.notes.append(f"stage failed: {type(exc).__name__}: {exc}")
                traceback.print_exc()
        run.diffs()
        run.save(out)
        text = report(run.data, run.jobs, run.notes, PEAK_TFLOPS, median)
        (out / "gpu-bench.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
