"""Real-Krita harness for the `krita` host tests, for two hosts: Krita 5 (the host's own package) and
Krita 6 (Debian experimental in a sid chroot, `tests/hosts/krita6_setup.sh`).

Per host and session: build the plugin zip, install it into an empty profile with Krita's OWN
importer (`import_plugin.py` runs the host's `plugin_importer.py` with that host's Python), start
Krita once to build its resource database (the template profile), then copy the template for the
scenario run. Krita always runs under Xvfb inside `timeout`; the test driver (an extension, never
shipped) writes one JSON per scenario. Recipes: shared/research/real-hosts.md and krita6.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.processes import kill_tree

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DRIVER = HERE / "krita_driver"
HOSTS_DIR = ROOT / "tests" / "hosts"
KRITA6_ROOT = Path(os.environ.get("KRITA6_ROOT", "/tmp/krita6-root"))
IMPORTER = "/usr/share/krita/pykrita/plugin_importer/plugin_importer.py"
# Abort / segfault, as a shell reports them or as `timeout` passes the signal on (Krita 5's first
# start once crashed in QML: rc 139).
CRASH_RCS = (134, 139, -6, -11)


@dataclass(frozen=True)
class Host:
    """One Krita under test: where it lives and how its programs are started."""

    name: str  # "krita5" | "krita6"

    @property
    def chroot(self) -> Path | None:
        return KRITA6_ROOT if self.name == "krita6" else None

    def missing(self) -> str | None:
        if self.chroot is None:
            gone = [exe for exe in ("krita", "Xvfb") if shutil.which(exe) is None]
            return f"Krita 5 needs {', '.join(gone)}: run tests/hosts/krita_setup.sh" if gone else None
        if not (self.chroot / "usr/bin/krita").exists():
            return f"no Krita 6 chroot at {self.chroot}: run tests/hosts/krita6_setup.sh"
        if shutil.which("Xvfb") is None:
            return "Krita 6 runs on the host's Xvfb: run tests/hosts/krita_setup.sh"
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            return "Krita 6 host tests need root and unshare(1) (chroot in a private mount namespace)"
        return None

    def run(self, argv: list[str], binds: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
        """`argv` with exactly `env` (paths under `binds` are the same inside a chroot as outside);
        after `timeout` seconds everything it started is killed. Returns (rc, stdout + stderr)."""
        if self.chroot is None:
            cmd, full_env = argv, {**_clean_env(), **env}
        else:
            inner = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
            cmd = [str(HOSTS_DIR / "krita6_in_chroot.sh"), str(self.chroot), *inner]
            full_env = {**_clean_env(), "CHROOT_BINDS": str(binds)}
        with subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
            try:
                out = p.communicate(timeout=timeout)[0]
                return p.returncode, out
            except subprocess.TimeoutExpired:
                kill_tree(p.pid)  # only what this run started: the wrapper, Xvfb and Krita
                return 124, f"killed after {timeout}s\n" + (p.communicate(timeout=30)[0] or "")


HOSTS = (Host("krita5"), Host("krita6"))


def _clean_env() -> dict[str, str]:
    """The test process's environment without the virtualenv: Krita's Python is the system one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"  # unshare, mount and chroot live in sbin
    return env


def require(host: Host) -> None:
    """Skip locally when the host is missing; in CI (env CI set) that is a failure."""
    reason = host.missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def build_zip(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "plugins.build", "krita", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    return out / "sdbridge-krita.zip"


def profile_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_RUNTIME_DIR": str(home / "runtime"),
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
    }  # fmt: skip


def install(host: Host, base: Path, home: Path, plugin_zip: Path) -> dict[str, Any]:
    """Tools ▸ Scripts ▸ Import Python Plugin from File, as Krita does it: its `PluginImporter`
    unpacks the zip into the profile's resources (`pykrita/`), then the plugin is enabled in
    kritarc (what the importer's dialog does when the user answers Yes). Returns the importer's
    report; the test driver (not part of the product) is copied in next to it."""
    resources = home / ".local/share/krita"
    resources.mkdir(parents=True, exist_ok=True)
    script = base / "import_plugin.py"
    shutil.copy2(HERE / "import_plugin.py", script)
    rc, out = host.run(["/usr/bin/python3", str(script), IMPORTER, str(plugin_zip), str(resources)],
                       base, profile_env(home), timeout=120)  # fmt: skip
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"error": out[-2000:], "type": f"rc {rc}"}
    pyk = resources / "pykrita"
    shutil.rmtree(pyk / "sdbridge_testdriver", ignore_errors=True)
    shutil.copytree(DRIVER / "sdbridge_testdriver", pyk / "sdbridge_testdriver")
    shutil.copy2(DRIVER / "sdbridge_testdriver.desktop", pyk)
    rc_file = home / ".config/kritarc"
    rc_file.parent.mkdir(parents=True, exist_ok=True)
    text = rc_file.read_text() if rc_file.exists() else ""
    if "enable_sdbridge=true" not in text:
        # Krita keeps (and merges) the [python] group when it rewrites kritarc.
        rc_file.write_text(text + "\n[python]\nenable_sdbridge=true\nenable_sdbridge_testdriver=true\n")
    return report


@dataclass
class KritaRun:
    host: str
    rc: int
    wall: float
    out: Path
    log: str

    def result(self, scenario: str) -> dict[str, Any]:
        path = self.out / f"{scenario}.json"
        if not path.exists():
            raise AssertionError(f"{self.host}: no result for {scenario} (rc={self.rc}); log tail:\n{self.log[-4000:]}")
        return json.loads(path.read_text())

    def done(self) -> dict[str, Any]:
        path = self.out / "done.json"
        return json.loads(path.read_text()) if path.exists() else {}


# Displays for our Xvfbs: far from the numbers other X users pick (0 up with -displayfd, 99 up with
# xvfb-run -a, 200 up in krita6_setup.sh). A chroot's Xvfb checks the chroot's lock files only and
# can take over a host display's socket in the shared socket dir: Krita 6 once started on a :0 whose
# socket had just been replaced ("could not connect to display :0").
DISPLAYS = range(600, 1000)


def _display_taken(n: int) -> bool:
    marks = (Path(f"/tmp/.X{n}-lock"), Path(f"/tmp/.X11-unix/X{n}"), KRITA6_ROOT / f"tmp/.X{n}-lock")
    return any(p.exists() for p in marks)


@contextmanager
def xvfb(log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A host Xvfb of our own for one Krita run (its output in `log`); yields its DISPLAY and process,
    and it is gone when this returns (xvfb-run does not wait for its Xvfb to exit, so back-to-back
    runs took a display that was still going away). The chroot reaches it through the shared X
    socket dir."""
    first = os.getpid() % len(DISPLAYS)
    for i in range(len(DISPLAYS)):
        n = DISPLAYS[(first + i) % len(DISPLAYS)]
        if _display_taken(n):
            continue
        # -noreset: no server regeneration when a client leaves (a start-up helper's connection
        # closing must not reset the server under Krita's own connection).
        with log.open("ab") as err:  # Xvfb keeps its own copy of the descriptor
            proc = subprocess.Popen([
                "Xvfb", f":{n}", "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp", "-noreset",
            ], stdout=subprocess.PIPE, stderr=err)  # fmt: skip
        assert proc.stdout is not None
        if proc.stdout.readline().decode().strip() != str(n):  # taken meanwhile: Xvfb exits, try the next
            _stop(proc)
            continue
        try:
            yield f":{n}", proc
        finally:
            _stop(proc)
        return
    raise AssertionError(f"no free X display in {DISPLAYS}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_krita(host: Host, base: Path, home: Path, out: Path, scenarios: list[str], url: str, timeout: int) -> KritaRun:
    out.mkdir(parents=True, exist_ok=True)
    (home / "runtime").mkdir(parents=True, exist_ok=True)
    (home / "runtime").chmod(0o700)
    env = profile_env(home) | {"SDB_TEST_OUT": str(out), "SDB_TEST_SCENARIOS": ",".join(scenarios), "SDB_TEST_URL": url}
    t = time.monotonic()
    with xvfb(out / "xvfb.log") as (display, server):
        argv = ["timeout", "-k", "5", str(timeout), "krita", "--nosplash"]
        rc, log = host.run(argv, base, env | {"DISPLAY": display}, timeout + 60)
        if server.poll() is not None:  # Krita 6 sometimes found no display: say whose fault it was
            log += f"\n[harness] Xvfb {display} exited during the run (rc {server.returncode}); see {out}/xvfb.log\n"
    (out / "krita.log").write_text(log)
    return KritaRun(host.name, rc, time.monotonic() - t, out, log)


def prepare_template(host: Host, base: Path, plugin_zip: Path) -> tuple[Path, dict[str, Any], list[str]]:
    """An installed profile whose first start (resource DB, ~20 s) is done; copies start in ~5 s.
    A crash while building it is retried once (and reported); scenario runs are never retried."""
    notes: list[str] = []
    for attempt in (1, 2):
        home = base / f"template{attempt}"
        report = install(host, base, home, plugin_zip)
        run = run_krita(host, base, home, base / f"warmup{attempt}", [], url="ws://127.0.0.1:9/", timeout=240)
        if run.done():
            return home, report, notes
        crashed = run.rc in CRASH_RCS
        notes.append(f"{host.name}: template start {attempt} ended with rc {run.rc} and no done.json")
        # Logged where a person finds it: stderr (pytest shows it with the test) and a file.
        print(notes[-1], "\n", run.log[-3000:], file=sys.stderr)
        with (base / "template-retries.log").open("a") as fh:
            fh.write(f"{notes[-1]}\n{run.log[-3000:]}\n")
        if not crashed or attempt == 2:
            raise AssertionError(f"{host.name}: Krita warm-up failed (rc={run.rc}):\n{run.log[-4000:]}")
    raise AssertionError("unreachable")


def run_scenarios(
    host: Host, base: Path, home: Path, out: Path, scenarios: list[str], url: str, notes: list[str]
) -> KritaRun:
    """Run every scenario in one Krita session, once. A crash is never retried: it is reported (stderr,
    `host-crashes.log`, `notes`) with the Python and native stacks the test driver's faulthandler wrote,
    and the tests that check Krita's exit fail with it."""
    run = run_krita(host, base, home, out, scenarios, url, timeout=900)
    if run.rc != 0:
        notes.append(f"{host.name}: Krita ended with rc {run.rc}{crash_report(run)}")
        print(notes[-1], "\n", run.log[-3000:], file=sys.stderr)
        with (base / "host-crashes.log").open("a") as fh:
            fh.write(f"{notes[-1]}\n{run.log[-6000:]}\n")
    return run


def crash_report(run: KritaRun) -> str:
    """What the driver's faulthandler saw (empty when Krita did not crash in the driver's lifetime)."""
    path = run.out / "faulthandler.log"
    text = path.read_text(errors="replace").strip() if path.exists() else ""
    return f"\n{text}" if text else ""


def assert_clean_exit(run: KritaRun, context: str = "") -> None:
    """Krita ended on its own with rc 0: a crash fails the test, with the stacks the driver saw."""
    assert run.rc == 0, f"{context}Krita ended with rc {run.rc}{crash_report(run)}\n{run.log[-3000:]}"


def fresh_profile(template: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", str(template), str(dest)], check=True)
    return dest


def own_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tag: str
) -> tuple[Host, Any, Path, Path]:
    """For a test module's own Krita session on the host in `request.param`: the host (missing: skipped,
    failed in CI), the session's `sdbridge serve`, a fresh folder and a profile ready to run in."""
    host: Host = request.param
    require(host)
    serve = request.getfixturevalue("sdb_serve")  # only once the host is known to be there
    base = tmp_path_factory.mktemp(f"{host.name}-{tag}")
    template, _importer, _notes = prepare_template(host, base, build_zip(base / "build"))
    return host, serve, base, fresh_profile(template, base / "home")
