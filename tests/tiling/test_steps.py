"""The img2img step rule (`tiling.steps.steps_run`), the one every step count in sdbridge uses."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tiling.plan import plan_tiles, unet_evaluations
from tiling.steps import steps_run

ROOT = Path(__file__).resolve().parents[2]
INTEGERS = {"round", "int", "ceil", "floor"}


def test_rounds_to_nearest_not_down() -> None:
    assert steps_run(20, 0.38) == 8  # 7.6: truncating would give 7
    assert steps_run(20, 0.32) == 6  # 6.4
    assert steps_run(30, 0.35) == 10  # 10.499999999999998
    assert steps_run(20, 1.0) == 20 and steps_run(20, 0.01) == 1 and steps_run(1, 0.2) == 1


@given(steps=st.integers(1, 150), strength=st.floats(0.0, 1.0))
def test_bounded_and_monotone(steps: int, strength: float) -> None:
    n = steps_run(steps, strength)
    assert 1 <= n <= steps and abs(n - steps * strength) <= max(0.5, 1 - steps * strength)
    assert steps_run(steps, min(1.0, strength + 0.05)) >= n


def test_cost_model_counts_the_same_steps() -> None:
    plan = plan_tiles(128, 128, 64, 8)
    assert unet_evaluations(plan, 20, 0.38) == len(plan) * 8


def test_nothing_else_rounds_steps_at_strength() -> None:
    # One rule: no other module turns `steps * strength` into a step count itself (round/int/ceil/floor).
    offenders = []
    for pkg in ("server", "tiling", "bench"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path == ROOT / "tiling" / "steps.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in INTEGERS):
                    continue
                for arg in node.args:
                    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mult):
                        sides = (ast.unparse(arg.left), ast.unparse(arg.right))
                        if any("steps" in t for t in sides) and any("strength" in t for t in sides):
                            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], offenders
