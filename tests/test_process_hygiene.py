"""Tests and their scripts end only processes they started, by pid (tests/processes.py walks down from
a test's own child). Looking processes up by name or command line would also hit an editor or a
second test suite running beside this one, so those tools must not appear anywhere under tests/."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Finding or signalling processes by name/pattern: pkill, killall, pgrep, `kill $(pgrep…)`,
# psutil's machine-wide iteration, and "pidof".
BY_NAME = re.compile(r"\b(pkill|killall|pgrep|pidof)\b|process_iter\(")


def test_no_test_finds_or_signals_processes_by_name() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*")):
        if path.suffix not in (".py", ".sh") or path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if BY_NAME.search(line):
                offenders.append(f"{path.relative_to(TESTS)}:{n}: {line.strip()}")
    assert not offenders, "signal only processes you started, by pid:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_should() -> None:
    for line in ("pkill -f plug-ins/sdbridge", "subprocess.run(['killall', 'gimp'])", "kill $(pgrep gimp)",
                 "for p in psutil.process_iter():", "pidof Xvfb"):  # fmt: skip
        assert BY_NAME.search(line), line
    assert not BY_NAME.search("kill_tree(proc.pid)") and not BY_NAME.search("os.kill(plugin_pid, signal.SIGKILL)")
