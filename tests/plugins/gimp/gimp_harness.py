"""Drive real GIMP 3 (trixie chroot) headlessly: install the built plug-in, run batch scenarios.

The chroot comes from `tests/hosts/gimp_setup.sh`. Every GIMP run goes through
`tests/hosts/gimp_in_chroot.sh`, which mounts /proc, /dev… in a private mount namespace, so
nothing stays mounted. The GIMP profile lives inside the chroot and is kept across runs: GIMP
only re-queries a plug-in whose main file's mtime changed, and the build preserves the sources'
mtimes, so after the first run a launch takes ~3–4 s instead of ~9 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import kill_tree

REPO = Path(__file__).resolve().parents[3]
HOSTS = REPO / "tests" / "hosts"
ROOT = Path(os.environ.get("GIMP3_ROOT", "/tmp/gimp3-root"))
GIMP = "/usr/bin/gimp-console-3.0"
GIMP_GUI = "/usr/bin/gimp-3.0"
# Paths as seen inside the chroot, one set per checkout: suites of two checkouts may run at once
# and must not install their plug-in into each other's profile or clean up each other's runs.
_CHECKOUT = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
PROFILE = f"/var/tmp/sdbridge-gimp-profile-{_CHECKOUT}"
PROFILE_GUI = f"/var/tmp/sdbridge-gimp-profile-gui-{_CHECKOUT}"
WORK = f"/var/tmp/sdbridge-gimp-work-{_CHECKOUT}"


def missing_reason() -> str | None:
    """Why real GIMP cannot run here (None when it can)."""
    if not (ROOT / GIMP.lstrip("/")).exists():
        return f"GIMP 3 chroot not found at {ROOT} (run tests/hosts/gimp_setup.sh)"
    if os.geteuid() != 0:
        return "GIMP 3 host tests need root (chroot + private mount namespace)"
    if shutil.which("unshare") is None:
        return "unshare(1) is missing"
    return None


@dataclass
class Serve:
    """The session's `sdbridge serve` as the GIMP tests use it."""

    url: str
    welcome: dict[str, Any]


@dataclass
class BatchRun:
    rc: int
    wall_s: float
    log: str
    results: dict[str, Any]
    out: Path  # host path of the run's output folder

    def pixels(self, scenario: str, which: str) -> bytes:
        return (self.out / f"{scenario}.{which}.rgba").read_bytes()


def install_plugin(build_dir: Path) -> None:
    """Copy a built `sdbridge/` folder into the chroot profiles (mtimes kept: no needless re-query)."""
    for profile in (PROFILE, PROFILE_GUI):
        dest = ROOT / profile.lstrip("/") / "plug-ins" / "sdbridge"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(build_dir, dest, copy_function=shutil.copy2)


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A private Xvfb for GUI GIMP (its socket is bound into the chroot); yields the display, ":N"."""
    proc = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None
    number = proc.stdout.readline().decode().strip()  # Xvfb picks a free display and reports it
    try:
        if not number.isdigit():
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()  # ours, by pid
        proc.wait(10)


def prefs_file(gui: bool = True) -> Path:
    """Host path of the plug-in's shared settings file in a chroot profile (`prefs.FILE_NAME`)."""
    return ROOT / (PROFILE_GUI if gui else PROFILE).lstrip("/") / "sdbridge-settings.json"


def client_id(gui: bool = True) -> str:
    """The id the plug-in says to the server from a chroot profile (`prefs.CLIENT_ID_FILE`): jobs are
    its own, so a test that fetches one of them afterwards connects as that client."""
    return (ROOT / (PROFILE_GUI if gui else PROFILE).lstrip("/") / "sdbridge-client-id").read_text().strip()


def run_batch(
    scenarios: list[dict[str, Any]],
    timeout: float = 300.0,
    tag: str = "run",
    display: str | None = None,
    started: Callable[[int], None] | None = None,
) -> BatchRun:
    """One GIMP launch that runs every scenario through the PDB; returns the results.

    `started` gets the pid of the launched process as soon as it exists: GIMP's plug-ins (and
    what they start) are its descendants, so a test can find and signal exactly those.

    Headless `gimp-console-3.0` by default; with `display` (an X display such as ":77" served by a
    host Xvfb, whose socket gimp_in_chroot.sh binds in) the GUI `gimp-3.0`, so procedure dialogs
    can be shown (own profile: switching one profile between console and GUI forces a re-query).
    """
    work_in = f"{WORK}/{tag}.{os.getpid()}"
    work = ROOT / work_in.lstrip("/")
    for stale in (ROOT / WORK.lstrip("/")).glob(f"{tag}.*"):  # earlier runs' dumps (kept for post-mortems)
        shutil.rmtree(stale, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy2(Path(__file__).with_name("gimp_batch.py"), work / "batch.py")
    (work / "scenarios.json").write_text(json.dumps(scenarios))
    env = [
        "PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8",
        f"SDB_OUT={work_in}", f"SDB_SCENARIOS={work_in}/scenarios.json",
    ]  # fmt: skip
    if display is None:
        env.append(f"GIMP3_DIRECTORY={PROFILE}")
        gimp = [GIMP, "-i"]
    else:
        env += [f"GIMP3_DIRECTORY={PROFILE_GUI}", f"DISPLAY={display}",
                f"SDBRIDGE_GIMP_DIALOG_TEST={work_in}/dialog.json"]  # fmt: skip
        gimp = [GIMP_GUI, "-s"]
    cmd = [
        str(HOSTS / "gimp_in_chroot.sh"), str(ROOT), "env", "-i", *env,
        *gimp, "--batch-interpreter=python-fu-eval", "-b", f'exec(open("{work_in}/batch.py").read())', "--quit",
    ]  # fmt: skip
    t0 = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        if started is not None:
            started(proc.pid)
        try:
            log = proc.communicate(timeout=timeout)[0]
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)  # GIMP and its plug-ins: the processes this run started, nothing else
            rc, log = 124, f"gimp timed out after {timeout}s\n{proc.communicate(timeout=30)[0]}"
    wall = time.monotonic() - t0
    results_file = work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    return BatchRun(rc, wall, log, results, work)
