"""Cancel the server job when the plug-in dies: how GIMP's progress-bar Cancel reaches the server.

GIMP cancels a running plug-in by sending it a quit message, waiting 10 ms and then SIGKILL-ing
it (app/plug-in/gimpplugin.c, gimp_plug_in_close): no Python code of ours runs after the click,
and the server deliberately keeps jobs of disconnected clients running. So for each job the
plug-in starts this tiny guard process in its own session (out of reach of the kill) with a pipe
on its stdin. The plug-in writes "done" when the job has ended; end-of-file without "done" means
the plug-in was killed, and the guard sends `cancel` for the job from a fresh connection that
says the plug-in's `client_id` (the server lets only a job's own client cancel it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import IO

DONE = b"done\n"
CANCEL_WAIT_S = 5.0


class Guard:
    def __init__(self, proc: subprocess.Popen[bytes] | None) -> None:
        self.proc = proc

    def release(self) -> None:
        """The job ended normally (or was cancelled by us): the guard exits without doing anything."""
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write(DONE)
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)


def spawn(url: str, token: str, job_id: str, client_id: str) -> Guard:
    """Start the guard (best effort: without it, cancel only stops the plug-in, not the server job).
    `client_id`: the submitting connection's, so the server takes the guard's cancel as the owner's."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([here, os.path.join(here, "vendor"), env.get("PYTHONPATH", "")])
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sdbridge_gimp.cancel_guard", url, job_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # not in the plug-in's process group: survives GIMP's kill (POSIX)
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # Windows: no console window flash
            close_fds=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(f"{token}\n{client_id}\n".encode())  # the token never appears on a command line
        proc.stdin.flush()
    except (OSError, ValueError):
        return Guard(None)
    return Guard(proc)


def watch(stdin: IO[bytes], url: str, job_id: str) -> bool:
    """Block until the plug-in says done or vanishes; cancel in the second case. True = cancelled."""
    token = stdin.readline().decode().strip()
    client_id = stdin.readline().decode().strip()
    rest = stdin.read()  # returns at EOF: the plug-in closed the pipe or died
    if rest.startswith(DONE):
        return False
    from ._common import jobs
    from .remote import Remote

    with contextlib.suppress(Exception), Remote(url, token, open_timeout=CANCEL_WAIT_S, client_id=client_id) as remote:
        remote.connect()
        remote.client.attach(job_id, jobs.GenerateRequest())  # follow the job (fetch) so it can be cancelled
        remote.cancel(job_id)
        remote.client.wait(job_id, CANCEL_WAIT_S)  # the server's answer: the cancel was not lost
    return True


def main(argv: list[str]) -> int:
    url, job_id = argv[1], argv[2]
    watch(sys.stdin.buffer, url, job_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
