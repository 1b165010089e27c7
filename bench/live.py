"""Live painting benchmark: latency (canvas change → pixels back), sustained frames per second while
painting, and what a burst of frames costs, through the real server and the editors' upload code.

Each frame is an img2img `generate` job marked `live` with a fixed seed, a few-step sampler and the
canvas as `init`, sent the way the editor plugins send it (`plugins/common/uploads.py`: the changed
rectangle against the previous frame). A "canvas change" is a brush dab painted into the canvas.

1. latency: paint a dab, send the frame, wait for its result pixels (decoded); one at a time.
2. sustained: paint at `--rate` dabs/s for `--seconds`, one frame per dab; results per second and
   the latency of the frames that produced a result.
3. burst: 50 frames within 1 s, then wait for every terminal event; how many the server executed
   (`started`) and how many it answered `superseded` or with a reused result.

    python bench/live.py [--sizes 512,1024] [--model PATH.safetensors] [--steps 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.common.jobs import WireImage  # noqa: E402
from plugins.common.uploads import Uploads  # noqa: E402
from server.client import Client  # noqa: E402
from server.embedded import start_server  # noqa: E402
from server.models.testmodels import write_sd_checkpoint  # noqa: E402

TERMINAL = ("result", "error", "cancelled", "superseded")


def photo(size: int) -> np.ndarray:
    from skimage import data

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BICUBIC))
    return np.dstack([rgb, np.full((size, size), 255, np.uint8)])


@dataclass
class Painter:
    """Brush dabs along a diagonal stroke: each `dab` changes a small disc of the canvas."""

    canvas: np.ndarray
    i: int = 0

    def dab(self) -> None:
        size = self.canvas.shape[0]
        r = max(4, size // 64)
        cx = (size // 8 + self.i * r) % (size - 2 * r) + r
        cy = (size // 4 + self.i * r // 2) % (size - 2 * r) + r
        yy, xx = np.ogrid[:size, :size]
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        self.canvas[disc] = [(40 * self.i) % 256, 90, 200, 255]
        self.i += 1


@dataclass
class Session:
    client: Client
    params: dict[str, Any]
    uploads: Uploads = field(default_factory=Uploads)
    events: dict[str, list[str]] = field(default_factory=dict)

    async def send(self, canvas: np.ndarray) -> str:
        h, w = canvas.shape[:2]
        img = WireImage.rgba(canvas.tobytes(), w, h)
        # Servers without de-duplication (no "image_hash" in welcome.features) get every frame in full.
        dedup = "image_hash" in self.client.welcome.get("features", ())
        wire = self.uploads.wire("init", img) if dedup else img.to_wire()
        job_id = await self.client.submit("generate", self.params, {"init": wire}, live=True)
        self.events[job_id] = []
        return job_id

    async def finish(self, job_id: str, canvas: np.ndarray | None = None) -> dict[str, Any]:
        """The job's terminal event (a `need_image` answer resends the frame in full, once)."""
        async for ev in self.client.events(job_id):
            self.events[job_id].append(ev["type"])
            if ev["type"] == "error" and ev.get("code") == "need_image" and canvas is not None:
                self.uploads.forget()
                return await self.finish(await self.send(canvas))
            if ev["type"] in TERMINAL or ev["type"] == "closed":
                if ev["type"] == "result":
                    _pixels(ev["images"][0])  # the bench measures until the pixels are usable
                return ev
        raise RuntimeError("connection closed")


def _pixels(rect: dict[str, Any]) -> np.ndarray:
    if rect["format"] == "rgba8":
        return np.frombuffer(rect["data"], np.uint8).reshape(rect["h"], rect["w"], 4)
    import io

    return np.asarray(Image.open(io.BytesIO(rect["data"])))


async def latency(s: Session, size: int, frames: int) -> list[float]:
    painter, out = Painter(photo(size)), []
    for _ in range(frames):
        t0 = time.perf_counter()
        painter.dab()
        ev = await s.finish(await s.send(painter.canvas), painter.canvas)
        if ev["type"] != "result":
            raise RuntimeError(f"frame ended with {ev}")
        out.append(time.perf_counter() - t0)
    return out


async def sustained(s: Session, size: int, rate: float, seconds: float) -> dict[str, Any]:
    painter, started = Painter(photo(size)), time.perf_counter()
    waits: list[asyncio.Task[tuple[float, dict[str, Any]]]] = []

    async def wait(job_id: str, t_change: float) -> tuple[float, dict[str, Any]]:
        ev = await s.finish(job_id)
        return time.perf_counter() - t_change, ev | {"done_at": time.perf_counter()}

    n = int(rate * seconds)
    for k in range(n):
        await asyncio.sleep(max(0.0, started + k / rate - time.perf_counter()))
        t_change = time.perf_counter()
        painter.dab()
        waits.append(asyncio.create_task(wait(await s.send(painter.canvas), t_change)))
    ends = await asyncio.gather(*waits)
    results = [(lat, ev) for lat, ev in ends if ev["type"] == "result"]
    span = max(ev["done_at"] for _, ev in ends) - started
    return {
        "frames": n,
        "results": len(results),
        "fps": len(results) / span,
        "latency": [lat for lat, _ in results],
        "superseded": sum(ev["type"] == "superseded" for _, ev in ends),
    }


async def burst(s: Session, size: int, frames: int = 50, within: float = 1.0) -> dict[str, Any]:
    painter, started, ids = Painter(photo(size)), time.perf_counter(), []
    for k in range(frames):
        await asyncio.sleep(max(0.0, started + k * within / frames - time.perf_counter()))
        painter.dab()
        ids.append(await s.send(painter.canvas))
    sent = time.perf_counter() - started
    ends = await asyncio.gather(*(s.finish(i) for i in ids))
    return {
        "frames": frames,
        "sent_in": sent,
        "executed": sum("started" in s.events[i] for i in ids),
        "results": sum(ev["type"] == "result" for ev in ends),
        "superseded": sum(ev["type"] == "superseded" for ev in ends),
        "drained_in": time.perf_counter() - started,
    }


def _ms(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


async def bench(url: str, size: int, args: argparse.Namespace) -> None:
    params = {
        "prompt": "a portrait, oil painting",
        "model": args.model_name,
        "seed": 1234,
        "steps": args.steps,
        "cfg": args.cfg,
        "sampler": args.sampler,
        "strength": args.strength,
        "result_format": "rgba8",
    }
    async with await Client.connect(url, name="bench-live") as client:
        s = Session(client, params)
        await latency(s, size, 1)  # warm-up: model load, first-call costs
        lat = await latency(s, size, args.frames)
        print(f"{size}²  latency ({args.frames} frames, one at a time): {_ms(lat)}", flush=True)
        sus = await sustained(s, size, args.rate, args.seconds)
        print(
            f"{size}²  sustained ({sus['frames']} dabs at {args.rate:g}/s): {sus['results']} results, "
            f"{sus['fps']:.2f} fps, {sus['superseded']} superseded, result latency {_ms(sus['latency'])}",
            flush=True,
        )
        b = await burst(s, size)
        print(
            f"{size}²  burst: {b['frames']} frames sent in {b['sent_in']:.2f} s → executed {b['executed']}, "
            f"results {b['results']}, superseded {b['superseded']}, all answered after {b['drained_in']:.2f} s",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--model", type=Path, help="a checkpoint file (default: the tiny SD1.5 test model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--cfg", type=float, default=1.0)
    ap.add_argument("--sampler", default="LCM")
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--rate", type=float, default=10.0, help="dabs per second in the sustained part")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        models = Path(d)
        if args.model is None:
            write_sd_checkpoint(models, "sd15")
            args.model_name = "tiny-sd15"
        else:
            os.symlink(args.model.resolve(), models / args.model.name)
            args.model_name = args.model.stem
        server = start_server(models, device=torch.device(args.device))
        print(f"device {args.device}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
        print(f"frames: {args.sampler} {args.steps} steps × strength {args.strength}, cfg {args.cfg}, fixed seed")
        try:
            for size in (int(x) for x in args.sizes.split(",")):
                asyncio.run(bench(server.url, size, args))
        finally:
            server.close()
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
