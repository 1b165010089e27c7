"""The queue's policy as a free worker of several sees it: its own models first, others' models left
to them, never a job it lost, and never a wait when the job is its own (pure; no server)."""

from __future__ import annotations

from dataclasses import dataclass

from server.scheduling import FairScheduler


@dataclass(eq=False)
class J:
    owner: str
    model: str | None
    n: int
    lost_on: tuple[str, ...] = ()


def has(*models: str):  # noqa: ANN201
    return lambda name: name in models


def test_a_job_both_idle_workers_hold_is_taken_by_whichever_asks() -> None:
    sched: FairScheduler[J] = FairScheduler()
    sched.add(J("a", "m1", 0))
    # The other idle worker holds m1 too: still this worker's to take (it must not wait for the other).
    job = sched.pick(has("m1"), elsewhere=lambda j: j.model == "m1")
    assert job is not None and job.n == 0


def test_a_job_another_idle_worker_holds_is_left_to_it() -> None:
    sched: FairScheduler[J] = FairScheduler()
    sched.add(J("a", "m2", 0))
    assert sched.pick(has("m1"), elsewhere=lambda j: j.model == "m2") is None  # left for the m2 worker
    job = sched.pick(has("m2"), elsewhere=lambda j: False)
    assert job is not None and job.n == 0


def test_a_free_worker_prefers_its_model_and_takes_the_rest_when_nobody_holds_it() -> None:
    sched: FairScheduler[J] = FairScheduler()
    sched.add(J("a", "m2", 0))
    sched.add(J("b", "m1", 1))
    first = sched.pick(has("m1"), elsewhere=lambda j: False)
    assert first is not None and first.n == 1  # b's m1 job goes before a's turn: this worker holds m1
    second = sched.pick(has("m1"), elsewhere=lambda j: False)
    assert second is not None and second.n == 0  # nobody idle holds m2: no waiting for a busy worker


def test_a_job_lost_on_a_worker_is_not_offered_to_it_again() -> None:
    sched: FairScheduler[J] = FairScheduler()
    sched.add(J("a", "m1", 0, lost_on=("w0",)))
    sched.add(J("b", "m1", 1))
    usable = lambda j: "w0" not in j.lost_on  # noqa: E731
    job = sched.pick(has("m1"), usable=usable)
    assert job is not None and job.n == 1
    assert sched.pick(has("m1"), usable=usable) is None
    rerun = sched.pick(has(), usable=lambda j: True)
    assert rerun is not None and rerun.n == 0


def test_a_rerun_goes_back_to_the_head_of_its_clients_queue() -> None:
    sched: FairScheduler[J] = FairScheduler()
    sched.add(J("a", None, 1))
    sched.add(J("b", None, 2))
    sched.add(J("a", None, 0), first=True)  # its worker was lost: it had its turn already
    assert [j.n for j in sched.order(has())] == [0, 2, 1]
