"""Upscalers and face restorers are loaded once and kept (by file, within a byte budget), like checkpoints.

File reads are counted where they happen: spandrel's `ModelLoader.load_from_file`, wrapped."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch

from server.client import ServerError
from server.embedded import RunningServer
from server.errors import ModelLoadError
from server.models.cache import FileCache
from server.models.registry import ModelManager
from server.models.restorer import write_test_restorer
from server.models.upscaler import write_test_upscaler
from tests.server.jobs.edit_helpers import job, photo, pixels, rgba8
from tests.servers import in_process

CPU = torch.device("cpu")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Resolved path → how many times spandrel read that file."""
    counts: Counter[str] = Counter()
    original = spandrel.ModelLoader.load_from_file

    def counting(self, path, *args, **kwargs):  # noqa: ANN001, ANN202 - same signature as spandrel's
        counts[str(Path(path).resolve())] += 1
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", counting)
    return counts


@pytest.fixture
def up_tree(models_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copy(models_dir / "tiny-sd15.safetensors", root)
    write_test_upscaler(root / "ESRGAN", "tiny-esrgan", 4)
    write_test_upscaler(root / "ESRGAN", "tiny-esrgan-2x", 2, seed=1)
    (root / "ESRGAN" / "broken.pth").write_bytes(b"not a model")
    return root


@pytest.fixture
def served(up_tree: Path) -> Iterator[RunningServer]:
    with in_process(up_tree) as running:
        yield running


def test_upscaler_file_is_read_once_across_two_upscale_jobs(served, up_tree: Path, reads: Counter[str]) -> None:
    img = rgba8(photo("astronaut", 40, 32))
    params = {"model": "tiny-sd15", "scale": 4, "strength": 0, "upscaler": "tiny-esrgan", "result_format": "rgba8"}
    first = job(served.url, "upscale", params, {"image": img})
    second = job(served.url, "upscale", params, {"image": img})
    path = str((up_tree / "ESRGAN" / "tiny-esrgan.pth").resolve())
    assert reads == Counter({path: 1})
    assert first["params"]["upscaler"] == "tiny-esrgan"
    assert np.array_equal(pixels(first["images"][0]), pixels(second["images"][0]))
    # A load failure in the model layer reaches the client as the job's `model_load` error event.
    with pytest.raises(ServerError) as err:
        job(served.url, "upscale", params | {"upscaler": "broken"}, {"image": img})
    assert err.value.code == "model_load" and "cannot load upscaler 'broken'" in str(err.value)


def test_restorer_is_read_once_and_a_changed_file_again(tmp_path: Path, reads: Counter[str]) -> None:
    path = write_test_restorer(tmp_path / "GFPGAN", "gfpgan")
    mm = ModelManager(tmp_path, CPU, torch.float32)
    desc = mm.restorer(path)
    assert mm.restorer(path) is desc
    assert reads[str(path.resolve())] == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # replaced on disk: load it again
    assert mm.restorer(path) is not desc
    assert reads[str(path.resolve())] == 2 and len(mm.aux) == 1


def test_byte_budget_evicts_the_least_recently_used(up_tree: Path, reads: Counter[str]) -> None:
    sizes = {}
    for name in ("tiny-esrgan", "tiny-esrgan-2x"):
        probe = ModelManager(up_tree, CPU, torch.float32)
        probe.upscaler(name)
        sizes[name] = probe.aux.size  # bytes of its parameters and buffers
    reads.clear()
    mm = ModelManager(up_tree, CPU, torch.float32, aux_cache_bytes=max(sizes.values()) + 1)  # room for one
    four = mm.upscaler("tiny-esrgan")
    assert mm.upscaler("tiny-esrgan") is four and len(mm.aux) == 1
    mm.upscaler("tiny-esrgan-2x")  # evicts the 4x
    assert len(mm.aux) == 1 and mm.aux.size == sizes["tiny-esrgan-2x"]
    assert mm.upscaler("tiny-esrgan") is not four
    assert sorted(reads.values()) == [1, 2]  # the 4x read twice, the 2x once
    big = ModelManager(up_tree, CPU, torch.float32, aux_cache_bytes=sum(sizes.values()))
    for name in ("tiny-esrgan", "tiny-esrgan-2x", "tiny-esrgan"):
        big.upscaler(name)
    assert len(big.aux) == 2 and big.aux.size == sum(sizes.values())


def test_a_broken_upscaler_is_a_model_load_error_and_not_cached(up_tree: Path) -> None:
    mm = ModelManager(up_tree, CPU, torch.float32)
    with pytest.raises(ModelLoadError, match="cannot load upscaler 'broken'"):
        mm.upscaler("broken")
    assert len(mm.aux) == 0


def test_file_cache_lru_keeps_the_newest_even_over_budget(tmp_path: Path) -> None:
    loads: list[str] = []

    def load(path: Path) -> bytes:
        loads.append(path.name)
        return path.read_bytes()

    files = {n: tmp_path / n for n in ("a", "b", "c")}
    for n, p in files.items():
        p.write_bytes(n.encode() * {"a": 4, "b": 4, "c": 20}[n])
    cache: FileCache[bytes] = FileCache(10, len)
    cache.get(files["a"], load)
    cache.get(files["b"], load)
    cache.get(files["a"], load)  # a is now the most recently used
    assert loads == ["a", "b"] and cache.size == 8
    cache.get(files["c"], load)  # 20 bytes alone: everything older goes, c stays
    assert len(cache) == 1 and cache.size == 20
    cache.get(files["a"], load)
    assert loads == ["a", "b", "c", "a"] and len(cache) == 1
