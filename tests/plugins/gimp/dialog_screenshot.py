"""Build the GIMP dialog screenshot used by plugins/gimp/README.md (docs/gimp-dialog.png).

    python -m tests.plugins.gimp.dialog_screenshot [OUT]     (default: docs/gimp-dialog.png)

It does what the dialog tests do, once: builds and installs the plug-in into the GIMP 3 chroot
(tests/hosts/gimp_setup.sh), starts `sdbridge serve` with the tiny random-weight test model, runs
GUI GIMP under a private Xvfb, fills the Generate dialog, presses OK and grabs the dialog at the
first step preview. Needs root and the chroot, like the tests; the preview shows the tiny model's
noise, not a picture.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from plugins.gimp import build as gimp_build
from server.models.testmodels import ARCHS
from tests.plugins.gimp import gimp_harness as harness
from tests.servers import start_serve

DEFAULT_OUT = harness.REPO / "docs" / "gimp-dialog.png"
FILLED = {"prompt": "a lighthouse on a cliff at dusk, (oil painting:1.2), dramatic sky",
          "negative": "blurry, text, watermark", "model": "tiny-sd15", "seed": 1234, "steps": 12,
          "strength": 1.0, "batch": 2}  # fmt: skip


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    reason = harness.missing_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sdbridge-docs-") as tmp_name:
        tmp = Path(tmp_name)
        harness.install_plugin(gimp_build.build(tmp / "build", archive=False))
        ARCHS["sd15"](tmp / "models", None, 0)
        with start_serve(tmp / "models", tmp / "serve.log") as serve, harness.xvfb() as display:
            prefs = harness.prefs_file()
            prefs.parent.mkdir(parents=True, exist_ok=True)
            prefs.write_text(json.dumps({"url": serve.url}))
            steps = [{"until": "connected"}, {"set": FILLED}, {"click": "ok"}, {"until": "idle", "timeout": 300}]
            scenario = {"id": "docs", "proc": "sdbridge-generate", "w": 256, "h": 256, "selection": None,
                        "args": {}, "dialog": {"steps": steps, "on_preview": [{"shot": "running"}]}}  # fmt: skip
            run = harness.run_batch([scenario], timeout=400, tag="docs", display=display)
        shot = run.out / "docs.running.png"
        if not shot.exists():
            print(f"no screenshot (rc={run.rc}):\n{run.log[-4000:]}", file=sys.stderr)
            return 1
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
