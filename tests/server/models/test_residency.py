"""The checkpoint cache (`models.residency`): LRU eviction under small budgets, models pushed out of the
device waiting in the RAM tier, base + refiner kept together (a second base+refiner job loads
nothing), per-job patches that never leak across cached models, files replaced on disk, and what
`welcome.resident` / `is_resident` report."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from server.models.loader import LoadedModel, estimate_bytes
from server.models.registry import REFINER as REFINER_KEY
from server.models.registry import ModelManager
from server.models.residency import model_bytes
from server.prompt import encode_pair
from tests.conftest import RunningServer, connect, run
from tests.server.jobs.edit_helpers import job, pixels

CPU = torch.device("cpu")
F32 = torch.float32
REFINER = "tiny-sdxl-refiner"
RKEY = REFINER_KEY + REFINER  # its cache key


@pytest.fixture(scope="module")
def sizes(models_dir: Path, a1111_tree: Path) -> dict[str, int]:
    """Bytes each model takes once loaded (what the budgets count)."""
    probe = ModelManager(models_dir, CPU, F32)
    out = {n: model_bytes(probe.get(n)) for n in ("tiny-sd15", "tiny-sdxl", "tiny-sd15-inpaint")}
    return out | {REFINER: model_bytes(ModelManager(a1111_tree, CPU, F32).get_refiner(REFINER))}


def one_job(mm: ModelManager, *names: str) -> list[LoadedModel]:
    """What a job does with the manager: ask for its models, then end."""
    got = [mm.get_refiner(n) if n == REFINER else mm.get(n) for n in names]
    mm.end_job()
    return got


def tiers(mm: ModelManager) -> dict[str, str]:
    return dict(mm.cache.resident())


def weights(model: LoadedModel) -> dict[str, torch.Tensor]:
    out = {f"unet.{k}": v.clone() for k, v in model.unet.state_dict().items()}
    for i, te in enumerate(model.text_encoders):
        out |= {f"te{i}.{k}": v.clone() for k, v in te.state_dict().items()}
    return out


def same_weights(model: LoadedModel, saved: dict[str, torch.Tensor]) -> bool:
    now = weights(model)
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)


def test_the_estimate_before_loading_is_the_loaded_size(models_dir: Path, sizes: dict[str, int]) -> None:
    for name in ("tiny-sd15", "tiny-sdxl"):
        estimate = estimate_bytes(models_dir / f"{name}.safetensors", F32)
        assert estimate <= sizes[name] <= estimate * 1.001  # the weights, plus buffers the file has no tensor for


def test_least_recently_used_leaves_a_small_device_budget(models_dir: Path, sizes: dict[str, int]) -> None:
    # Room for tiny-sd15 + tiny-sdxl, or tiny-sd15 + inpaint, never all three; no RAM tier.
    mm = ModelManager(models_dir, CPU, F32, vram_budget=sizes["tiny-sd15"] + sizes["tiny-sdxl"], ram_budget=0)
    (sd15,) = one_job(mm, "tiny-sd15")
    one_job(mm, "tiny-sd15-inpaint")
    one_job(mm, "tiny-sd15")  # now the most recently used
    one_job(mm, "tiny-sdxl")  # evicts the least recently used: the inpainting model
    assert tiers(mm) == {"tiny-sdxl": "device", "tiny-sd15": "device"} and mm.cache.loads == 3
    assert list(tiers(mm)) == ["tiny-sdxl", "tiny-sd15"] and mm.resident_name == "tiny-sdxl"
    assert mm.is_resident("tiny-sd15") and not mm.is_resident("tiny-sd15-inpaint")
    assert one_job(mm, "tiny-sd15")[0] is sd15 and mm.cache.loads == 3  # resident: nothing loaded
    one_job(mm, "tiny-sd15-inpaint")
    assert tiers(mm) == {"tiny-sd15-inpaint": "device", "tiny-sd15": "device"} and mm.cache.loads == 4
    assert mm.cache.used("device") <= mm.cache.device_budget


def test_models_pushed_off_the_device_wait_in_ram(models_dir: Path, sizes: dict[str, int]) -> None:
    ram = sizes["tiny-sd15"] + sizes["tiny-sd15-inpaint"]  # not enough for tiny-sdxl
    mm = ModelManager(models_dir, CPU, F32, vram_budget=sizes["tiny-sdxl"], ram_budget=ram)
    (sd15,) = one_job(mm, "tiny-sd15")
    one_job(mm, "tiny-sdxl")
    assert tiers(mm) == {"tiny-sdxl": "device", "tiny-sd15": "ram"}
    assert not mm.is_resident("tiny-sd15") and mm.is_resident("tiny-sdxl")
    one_job(mm, "tiny-sd15-inpaint")  # tiny-sdxl is larger than the RAM tier: dropped, not kept
    assert tiers(mm) == {"tiny-sd15-inpaint": "device", "tiny-sd15": "ram"}
    assert one_job(mm, "tiny-sd15")[0] is sd15 and mm.cache.loads == 3  # back from RAM, not from disk
    assert tiers(mm) == {"tiny-sd15": "device", "tiny-sd15-inpaint": "device"}  # the two small ones fit
    assert mm.resident() == [{"name": "tiny-sd15", "where": "ram"}, {"name": "tiny-sd15-inpaint", "where": "ram"}]


def test_two_models_trade_places_between_the_tiers(models_dir: Path, sizes: dict[str, int]) -> None:
    one = sizes["tiny-sdxl"]  # each tier holds exactly one of the two
    mm = ModelManager(models_dir, CPU, F32, vram_budget=one, ram_budget=one)
    a, b = one_job(mm, "tiny-sdxl")[0], one_job(mm, "tiny-sd15")[0]
    for _ in range(2):
        assert one_job(mm, "tiny-sdxl")[0] is a and tiers(mm) == {"tiny-sdxl": "device", "tiny-sd15": "ram"}
        assert one_job(mm, "tiny-sd15")[0] is b and tiers(mm) == {"tiny-sd15": "device", "tiny-sdxl": "ram"}
    assert mm.cache.loads == 2


def test_a_model_alone_over_budget_still_runs(models_dir: Path) -> None:
    mm = ModelManager(models_dir, CPU, F32, vram_budget=1, ram_budget=0)
    one_job(mm, "tiny-sd15")
    one_job(mm, "tiny-sdxl")
    assert tiers(mm) == {"tiny-sdxl": "device"} and mm.cache.loads == 2


def test_base_and_refiner_stay_loaded_together(a1111_tree: Path) -> None:
    mm = ModelManager(a1111_tree, CPU, F32)  # automatic budget: half the available RAM
    first = one_job(mm, "tiny-sdxl", REFINER)
    assert mm.cache.loads == 2
    assert one_job(mm, "tiny-sdxl", REFINER) == first and mm.cache.loads == 2  # the second job loads nothing
    assert one_job(mm, "tiny-sdxl")[0] is first[0] and mm.cache.loads == 2  # nor does the next base job
    assert {"name": REFINER, "where": "ram", "refiner": True} in mm.resident()
    assert mm.resident_name == "tiny-sdxl"  # a refiner is not a selectable model


def test_base_and_refiner_that_do_not_fit_together_take_turns(a1111_tree: Path, sizes: dict[str, int]) -> None:
    both = sizes["tiny-sdxl"] + sizes[REFINER]
    mm = ModelManager(a1111_tree, CPU, F32, vram_budget=max(sizes["tiny-sdxl"], sizes[REFINER]), ram_budget=both)
    base, refiner = one_job(mm, "tiny-sdxl", REFINER)
    assert tiers(mm) == {RKEY: "device", "tiny-sdxl": "ram"}  # the base made room once its part was done
    assert one_job(mm, "tiny-sdxl", REFINER) == [base, refiner] and mm.cache.loads == 2  # copies, no loads


def test_job_patches_never_leak_across_cached_models(a1111_tree: Path, sizes: dict[str, int]) -> None:
    """A LoRA on the base, which is pushed to RAM mid-job by its refiner: reverted, bit for bit."""
    mm = ModelManager(a1111_tree, CPU, F32, vram_budget=sizes["tiny-sdxl"], ram_budget=10 * sizes["tiny-sdxl"])
    base = mm.get("tiny-sdxl")
    original = weights(base)
    encode_pair(base, "a cat <lora:lora-sdxl:1>", "", 1)  # patches the base for this job
    assert not same_weights(base, original)
    refiner = mm.get_refiner(REFINER)
    encode_pair(refiner, "a cat", "", 1, networks=False)
    assert tiers(mm)["tiny-sdxl"] == "ram" and same_weights(base, original)  # reverted as it left the device
    mm.end_job()
    assert mm.get("tiny-sdxl") is base and same_weights(base, original) and "lora_active" not in base.extras


def test_a_checkpoint_replaced_on_disk_loads_again(tmp_path: Path, models_dir: Path) -> None:
    shutil.copy(models_dir / "tiny-sd15.safetensors", tmp_path)
    mm = ModelManager(tmp_path, CPU, F32)
    (first,) = one_job(mm, "tiny-sd15")
    path = tmp_path / "tiny-sd15.safetensors"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert one_job(mm, "tiny-sd15")[0] is not first and mm.cache.loads == 2 and len(tiers(mm)) == 1


def test_is_resident_is_answered_while_a_model_loads(models_dir: Path) -> None:
    mm = ModelManager(models_dir, CPU, F32)
    answers: list[bool] = []
    stop = threading.Event()

    def ask() -> None:  # the queue's thread, polling while the worker loads
        while not stop.is_set():
            answers.append(mm.is_resident("tiny-sdxl"))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        one_job(mm, "tiny-sdxl")
    finally:
        stop.set()
        asker.join()
    assert answers and not answers[0] and mm.is_resident("tiny-sdxl")


def test_welcome_lists_resident_models_and_cached_models_stay_clean(a1111_server: RunningServer) -> None:
    url = a1111_server.url
    sd = {"model": "tiny-sd15", "prompt": "a cat", "steps": 2, "seed": 3, "width": 64, "height": 64}
    xl = sd | {"model": "tiny-sdxl"}

    def image(params: dict) -> np.ndarray:
        return pixels(job(url, "generate", params, {})["images"][0])

    plain_sd, plain_xl = image(sd), image(xl)
    image(sd | {"prompt": "a cat <lora:lora-sd15:1>", "vae": "vae-sd15"})
    image(xl | {"prompt": "a cat <lora:lora-sdxl:1>", "refiner": REFINER})
    assert np.array_equal(image(sd), plain_sd) and np.array_equal(image(xl), plain_xl)

    async def welcome() -> dict:
        async with await connect(url) as c:
            return c.welcome

    w = run(welcome())
    assert w["resident"][0] == {"name": "tiny-sdxl", "where": "ram"} and w["model"] == "tiny-sdxl"
    assert {"name": "tiny-sd15", "where": "ram"} in w["resident"]
    assert {"name": REFINER, "where": "ram", "refiner": True} in w["resident"]
    assert a1111_server.server.models.is_resident("tiny-sd15")
