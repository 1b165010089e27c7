"""Transport benchmark: a 4096² RGBA canvas to the server and a 4096² result back, over loopback.

Ours: the real `sdbridge` server (`echo` job), msgpack frames with raw `rgba8` bytes, chunked.
Baseline, measured in the same run: what HTTP/JSON APIs of A1111-style backends do — the image as
base64 PNG inside JSON, both ways, through a websocket echo server doing the same decode/encode.
Prints per-run times and, last, `speedup: X` (baseline time / ours).

    python bench/transport.py [--size 4096] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.client import Client  # noqa: E402
from server.embedded import start_server  # noqa: E402


def canvas(size: int) -> np.ndarray:
    """A real photo scaled to the canvas size (compresses like artwork, unlike noise)."""
    from skimage import data

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BICUBIC))
    return np.dstack([rgb, np.full((size, size), 255, np.uint8)])


async def ours(url: str, img: np.ndarray) -> float:
    h, w = img.shape[:2]
    async with await Client.connect(url) as client:
        t0 = time.perf_counter()
        res = await client.run(
            "echo", {"result_format": "rgba8"}, {"image": {"format": "rgba8", "w": w, "h": h, "data": img.tobytes()}}
        )
        out = np.frombuffer(res["images"][0]["data"], np.uint8).reshape(h, w, 4)
        dt = time.perf_counter() - t0
    assert np.array_equal(out, img)
    return dt


def _png_b64(img: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _from_png_b64(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


async def baseline_handler(ws) -> None:  # noqa: ANN001 - websockets connection
    async for msg in ws:
        img = _from_png_b64(json.loads(msg)["init_images"][0])
        await ws.send(json.dumps({"images": [_png_b64(img)], "info": "{}"}))


async def baseline(url: str, img: np.ndarray) -> float:
    async with connect(url, max_size=None, compression=None) as ws:
        t0 = time.perf_counter()
        await ws.send(json.dumps({"init_images": [_png_b64(img)], "prompt": ""}))
        out = _from_png_b64(json.loads(await ws.recv())["images"][0])
        dt = time.perf_counter() - t0
    assert np.array_equal(out, img)
    return dt


def start_baseline() -> str:
    ready = threading.Event()
    box: dict = {}

    async def main() -> None:
        async with serve(baseline_handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
            box["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await asyncio.Future()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    ready.wait(30)
    return f"ws://127.0.0.1:{box['port']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    img = canvas(args.size)
    server = start_server(None)
    base_url = start_baseline()
    print(f"canvas {args.size}x{args.size} RGBA ({img.nbytes / 2**20:.0f} MiB), {args.runs} runs each, loopback")
    t_ours = [asyncio.run(ours(server.url, img)) for _ in range(args.runs)]
    t_base = [asyncio.run(baseline(base_url, img)) for _ in range(args.runs)]
    print("ours (msgpack + raw rgba8, chunked):   " + ", ".join(f"{t:.3f}s" for t in t_ours))
    print("baseline (JSON + base64 PNG):          " + ", ".join(f"{t:.3f}s" for t in t_base))
    server.close()
    print(f"speedup: {min(t_base) / min(t_ours):.1f}")


if __name__ == "__main__":
    main()
