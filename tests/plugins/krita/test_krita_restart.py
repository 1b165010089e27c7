"""Real Krita (5 and 6): a job sent before Krita quit is fetched after Krita starts again with the same
profile (plugins/krita/resume.py). Krita keeps the plugin's client id in its settings, and the server
gives a result only to the client id that sent the job."""

from __future__ import annotations

import sys

import pytest
from krita_harness import HOSTS, assert_clean_exit, own_session, run_krita

pytestmark = [pytest.mark.krita, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module", params=HOSTS, ids=[h.name for h in HOSTS])
def sessions(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    host, serve, base, home = own_session(request, tmp_path_factory, "restart")
    out = base / "out"
    results = []
    for scenario in ("restart_submit", "restart_fetch"):  # two Krita sessions, one profile
        run = run_krita(host, base, home, out, [scenario], serve.url, timeout=600)
        print(f"\n{host.name} {scenario}: rc={run.rc} wall={run.wall:.1f}s", file=sys.stderr)
        assert_clean_exit(run, f"{scenario}: ")
        res = run.result(scenario)
        assert res["ok"] and not res["uncaught"], res.get("error") or res["uncaught"]
        results.append(res)
    return results[0], results[1]


def test_a_result_sent_before_krita_quit_arrives_after_it_starts_again(sessions: tuple[dict, dict]) -> None:
    sent, fetched = sessions
    assert sent["saved"] and sent["status_at_quit"] in ("queued", "started") and sent["running_at_close"], sent
    assert sent["kept"] == [sent["job"]]  # in Krita's settings when Krita quit
    assert fetched["kept_at_start"] == [sent["job"]]
    assert [f["status"] for f in fetched["finished"]] == ["result"], fetched
    (entry,) = fetched["entries"]
    assert entry["id"] == f"{sent['job']}.0" and entry["name"] == "a red fox (31)", entry
    assert entry["rect"] == [0, 0, 256, 256] and entry["canvas"] == [128, 128], entry  # a 256² txt2img on the 128² doc
    assert "[sdbridge preview]" in [x["name"] for x in fetched["layers"]]  # shown for review, as any result
    assert fetched["kept_after"] == []  # fetched: nothing left to follow


def test_the_client_id_is_kept_in_kritas_settings(sessions: tuple[dict, dict]) -> None:
    sent, fetched = sessions
    assert len(sent["client_id"]) == 32 and sent["setting_client_id"] == sent["client_id"]
    assert fetched["client_id"] == sent["client_id"]
