"""Real-Krita harness for the `krita` host tests: build the plugin zip, prepare an isolated
profile once per session, install the zip into a copy of it, run Krita under Xvfb (always inside
`timeout`), and collect the test driver's JSON. Recipe: shared/research/real-hosts.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DRIVER = HERE / "krita_driver"


def require_krita() -> None:
    """Skip locally when Krita/Xvfb are missing; in CI (env CI set) that is a failure."""
    missing = [exe for exe in ("krita", "xvfb-run", "xauth") if shutil.which(exe) is None]
    if not missing:
        return
    msg = f"real Krita host test needs {', '.join(missing)}: run tests/hosts/krita_setup.sh"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def build_zip(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "plugins.build", "krita", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return out / "sdbridge-krita.zip"


def install(home: Path, plugin_zip: Path) -> None:
    """What Tools ▸ Scripts ▸ Import Python Plugin from File does: unpack into pykrita, enable it."""
    pyk = home / ".local/share/krita/pykrita"
    pyk.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(pyk / "sdbridge", ignore_errors=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(pyk)
    shutil.rmtree(pyk / "sdbridge_testdriver", ignore_errors=True)
    shutil.copytree(DRIVER / "sdbridge_testdriver", pyk / "sdbridge_testdriver")
    shutil.copy2(DRIVER / "sdbridge_testdriver.desktop", pyk)
    rc = home / ".config/kritarc"
    rc.parent.mkdir(parents=True, exist_ok=True)
    text = rc.read_text() if rc.exists() else ""
    if "enable_sdbridge=true" not in text:
        # Krita keeps the [python] group when it rewrites kritarc; append a fresh one otherwise.
        text += "\n[python]\nenable_sdbridge=true\nenable_sdbridge_testdriver=true\n"
        rc.write_text(text)


@dataclass
class KritaRun:
    rc: int
    wall: float
    out: Path
    log: str

    def result(self, scenario: str) -> dict:
        path = self.out / f"{scenario}.json"
        if not path.exists():
            raise AssertionError(f"no result for {scenario} (krita rc={self.rc}); log tail:\n{self.log[-4000:]}")
        return json.loads(path.read_text())


def run_krita(home: Path, out: Path, scenarios: list[str], url: str, timeout: int = 240) -> KritaRun:
    out.mkdir(parents=True, exist_ok=True)
    (home / "runtime").mkdir(exist_ok=True)
    (home / "runtime").chmod(0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CACHE_HOME=str(home / ".cache"), XDG_RUNTIME_DIR=str(home / "runtime"),
        SDB_TEST_OUT=str(out), SDB_TEST_SCENARIOS=",".join(scenarios), SDB_TEST_URL=url,
        PATH="/usr/bin:/bin:/usr/local/bin",  # Krita's python3 must not be a venv/pyenv shim
    )  # fmt: skip
    cmd = ["timeout", "-k", "5", str(timeout), "xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"]
    t = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout + 30)
    return KritaRun(proc.returncode, time.monotonic() - t, out, proc.stdout + proc.stderr)


def prepare_template(base: Path, plugin_zip: Path) -> Path:
    """First start of an empty profile builds Krita's resource DB (~20 s); copies then start in ~5 s."""
    home = base / "template"
    install(home, plugin_zip)
    run = run_krita(home, base / "warmup", [], url="ws://127.0.0.1:9/", timeout=180)
    if not (base / "warmup" / "done.json").exists():
        raise AssertionError(f"Krita warm-up run failed (rc={run.rc}):\n{run.log[-4000:]}")
    return home


def fresh_profile(template: Path, dest: Path, plugin_zip: Path) -> Path:
    subprocess.run(["cp", "-a", str(template), str(dest)], check=True)
    install(dest, plugin_zip)
    return dest
