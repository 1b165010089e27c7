"""Runs the Ray cluster tests (tests/server/workers/cluster/) where they can only use loopback: in a new
network namespace whose one interface is `lo`, and a new pid namespace, so that nothing they start (Ray's
daemons and workers) can outlive them, whatever happens. Their own pytest reports each test; this one
fails with its output if any of them failed, was skipped, or none ran."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.processes import kill_tree
from tests.servers import ROOT

CLUSTER_TESTS = Path(__file__).parent / "cluster"
TIMEOUT_S = 540  # under the suite's 600 s per test; 115-290 s on the shared 2-core machine (load 10-16)


def test_the_cluster_tests_pass_in_a_private_network_namespace(tmp_path: Path) -> None:
    assert shutil.which("unshare"), "the cluster tests need util-linux's unshare (and root)"
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise AssertionError(
            "the cluster tests need Ray: pip install -e '.[test,cluster]' (./run.sh test does)"
        ) from exc
    report = tmp_path / "cluster.xml"
    inner = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=5",
        str(CLUSTER_TESTS),
        f"--junitxml={report}",
    ]
    cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
    cmd += ["sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, _ = proc.communicate()
        raise AssertionError(
            f"the cluster tests took over {TIMEOUT_S} s:\n{out.decode(errors='replace')[-6000:]}"
        ) from None
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"cluster tests failed (exit {proc.returncode}):\n{text[-8000:]}"
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 9 and counts["failures"] == counts["errors"] == counts["skipped"] == 0, (counts, text)
