"""The `sdbridge` parser: every sub-command listed, the console script resolves, shared options everywhere."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from server.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]
COMMANDS = ("serve", "make-test-model", "generate", "models", "inpaint", "outpaint", "face", "restore", "upscale")
# Sub-command → the positional arguments it needs.
JOBS = {
    "generate": ["a cat"],
    "inpaint": ["in.png", "mask.png"],
    "outpaint": ["in.png"],
    "face": ["in.png"],
    "restore": ["in.png"],
    "upscale": ["in.png"],
}


def test_help_lists_every_sub_command() -> None:
    res = subprocess.run([sys.executable, "-m", "server.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    listed = res.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert listed == list(COMMANDS)


def test_console_script_is_the_same_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["sdbridge"].partition(":")
    assert getattr(importlib.import_module(module), func) is importlib.import_module("server.cli").main


@pytest.mark.parametrize("command", sorted(JOBS))
def test_job_commands_share_output_and_connection_options(command: str, tmp_path: Path) -> None:
    argv = [command, *JOBS[command], "--out", str(tmp_path / "o.png"), "--layers", str(tmp_path / "l")]
    args = build_parser().parse_args([*argv, "--url", "ws://h:1", "--token", "t"])
    assert (args.out, args.layers, args.url, args.token) == (tmp_path / "o.png", tmp_path / "l", "ws://h:1", "t")
    assert callable(args.func)
    with pytest.raises(SystemExit):  # --out is required everywhere
        build_parser().parse_args([command, *JOBS[command]])
