"""`bench/gpu.py`'s printout: the Markdown table for bench/RESULTS.md, the issue's targets, the step
and VAE micro-benchmarks, and the fast path's bucket log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# Issue 19's targets on the H200 (same run): (what, how to read it off the data, comparison, bound).
TARGETS = (
    ("SD1.5 b1: diffusers / ours", "ratio", "SD1.5", 1, ">=", 3.0),
    ("SDXL b1: diffusers / ours", "ratio", "SDXL", 1, ">=", 1.8),
    ("SD1.5 b1: it/s", "its", "SD1.5", 1, ">=", 150.0),
)


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "—" if v is None else format(v, fmt)


def _diff(d: dict[str, Any] | None) -> str:
    if not d:
        return "—"
    return f"{d['max']} ({100 * d['within_2']:.2f} % ≤ 2)" + (" flat!" if d["flat"] else "")


def rows(data: dict[str, Any], jobs: Sequence[Any], peak: float, median: Callable[[dict], float | None]) -> list[dict]:
    out = []
    for job in jobs:
        ours, eager = data["ours"].get(job.label, {}), data["eager"].get(job.label, {})
        base = data["diffusers"].get(job.label, {})
        t, te, td = median(ours), median(eager), median(base)
        flops = data["micro"].get(job.family, {}).get("flops_per_step")
        work = job.steps * job.batch  # image-steps of a plain generate
        row = {
            "job": job.label,
            "first": ours.get("first_s"),
            "ours": t,
            "eager": te,
            "diffusers": td,
            "ratio": td / t if t and td else None,
            "eager_ratio": te / t if t and te else None,
            "its": work / t if t and work else None,
            "tflops": flops * work / t / 1e12 if t and work and flops else None,
            "floor": flops * work / (peak * 1e12) if work and flops else None,
            "mem": ours.get("peak_gib"),
            "mem_diffusers": base.get("peak_gib"),
            "fast_vs_eager": ours.get("fast_vs_eager"),
            "vs_diffusers": eager.get("vs_diffusers"),
            "error": ours.get("error") or eager.get("error"),
        }
        out.append(row)
    return out


def table(rs: list[dict], peak: float) -> list[str]:
    lines = [
        "| job | first request s | ours s | ours eager s | diffusers s | diffusers/ours | eager/fast | it/s | "
        f"TFLOP/s (% of {peak:.0f}) | floor s | peak GiB ours / diffusers | fast vs eager max diff /255 | "
        "ours eager vs diffusers max diff /255 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        tf = f"{r['tflops']:.3g} ({100 * r['tflops'] / peak:.2g} %)" if r["tflops"] else "—"
        mem = f"{_f(r['mem'], '.1f')} / {_f(r['mem_diffusers'], '.1f')}"
        lines.append(
            f"| {r['job']} | {_f(r['first'])} | {_f(r['ours'], '.3f')} | {_f(r['eager'], '.3f')} | "
            f"{_f(r['diffusers'], '.3f')} | {_f(r['ratio'])} | {_f(r['eager_ratio'])} | {_f(r['its'], '.1f')} | "
            f"{tf} | {_f(r['floor'], '.3f')} | {mem} | {_diff(r['fast_vs_eager'])} | {_diff(r['vs_diffusers'])} |"
        )
        if r["error"]:
            lines.append(f"|   ↳ error: {r['error'][:200]} |")
    return lines


def targets(rs: list[dict]) -> list[str]:
    def find(prefix: str, batch: int, kind: str = "steps") -> dict | None:
        for r in rs:
            if r["job"].startswith(prefix + " ") and kind in r["job"] and r["job"].endswith(f"b{batch}"):
                return r
        return None

    out = []
    for what, key, prefix, batch, op, bound in TARGETS:
        r = find(prefix, batch)
        out.append(_check(what, r[key] if r else None, op, bound))
    up = next((r for r in rs if "upscale" in r["job"]), None)
    out.append(_check("upscale 2048²→4096² at 0.35: s", up["ours"] if up else None, "<=", 8.0))
    rt = next((r for r in rs if "round trip" in r["job"]), None)
    out.append(_check("4096² round trip: s", rt["ours"] if rt else None, "<=", 0.3))
    shares = [r["fast_vs_eager"]["within_2"] for r in rs if r["fast_vs_eager"]]
    worst = min(shares, default=None)
    out.append(_check("fast vs eager: share of pixels within 2/255 (worst job)", worst, ">=", 0.999))
    return out


def _check(what: str, value: float | None, op: str, bound: float) -> str:
    if value is None:
        return f"- {what}: not measured"
    ok = value >= bound if op == ">=" else value <= bound
    return f"- {what}: {value:.3f} (target {op} {bound:g}) {'met' if ok else 'NOT met'}"


def micro(data: dict[str, Any], peak: float) -> list[str]:
    lines = []
    for fam, m in data["micro"].items():
        flops = m.get("flops_per_step", 0)
        lines.append(f"{fam}: one CFG step = {flops / 1e12:.4g} TFLOP (floor {flops / (peak * 1e12) * 1e3:.3g} ms)")
        s = m.get("step")
        if s:
            parts = [f"{k} {v:.2f} ms" for k, v in s.items() if k.endswith("_ms")]
            parts += [f"{k} {v:.2e}" for k, v in s.items() if k.endswith(("_diff", "_abs"))]
            lines.append(f"  step: {', '.join(parts)}; output finite: {s['finite']}")
        v = m.get("vae")
        if v:
            extra = f", bf16 {v['bf16_ms']:.1f} ms, max diff {v['bf16_max_diff']}/255" if "bf16_ms" in v else ""
            lines.append(f"  VAE decode ({v['dtype']}): {v['ms']:.1f} ms{extra}")
        c = m.get("compile")
        if c:
            build = f"build {c['build_s']:.1f} s, then {c['ms']:.2f} ms/step"
            lines.append(f"  torch.compile: {build}, rel diff {c['rel_diff']:.1e}")
    return lines


def report(
    data: dict[str, Any], jobs: Sequence[Any], notes: list[str], peak: float, median: Callable[[dict], float | None]
) -> str:
    meta = data["meta"]
    rs = rows(data, jobs, peak, median)
    head = [
        f"## GPU benchmark (`{meta['command']}`) — {meta['date']}",
        "",
        f"Device {meta['device']}; torch {meta['torch']}, diffusers {meta['diffusers']}, Python {meta['python']}; "
        f"server --fast {meta['fast']}; checkpoints: "
        + ", ".join(f"{k} {v['how']}" for k, v in meta.get("checkpoints", {}).items()),
        "Times are request→result through the websocket (rgba8 results), median of the repeats; the first "
        "request (model load, bucket builds) is apart. it/s and TFLOP/s count image-steps (batch × steps); "
        f"memory: NVML, {meta.get('memory', 'n/a')} scope (allocator cache + CUDA context).",
    ]
    if meta["tiny"]:
        head.append("**Tiny CPU smoke run: these numbers are not GPU figures and say nothing about speed.**")
    goals = ["- not evaluated: they are for the full-size run on the H200"] if meta["tiny"] else targets(rs)
    out = [*head, "", *table(rs, peak), "", "Targets (issue 19, H200):", *goals, "", "Micro-benchmarks:"]
    out += micro(data, peak)
    buckets = [f"  {b}" for b in data.get("buckets", [])] or ["  none"]
    out += ["", "Fast-path log of the server:", *buckets]
    if notes:
        out += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(out)
