"""One walking policy for every model discovery (`server.models.files.walk`): dot-names skipped,
symlinked files and folders followed wherever they point, link loops entered once, broken links skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from server.errors import BadName, JobError
from server.models.files import walk
from server.models.registry import ModelManager, discover
from server.models.upscaler import write_test_upscaler

CPU = torch.device("cpu")


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def names(base: Path, **kw) -> list[str]:
    return [p.relative_to(base).as_posix() for p in walk(base, **kw)]


def test_walk_policy(tmp_path: Path) -> None:
    base, elsewhere = tmp_path / "base", tmp_path / "elsewhere"
    for rel in ("a.pth", "sub/b.pth", ".hidden.pth", ".cache/c.pth", "sub/.d.pth", "diff/model_index.json"):
        touch(base / rel)
    touch(elsewhere / "e.pth")
    touch(elsewhere / "shelf" / "f.pth")
    (base / "linked.pth").symlink_to(elsewhere / "e.pth")  # a file linked in from another disk
    (base / "shelf").symlink_to(elsewhere / "shelf", target_is_directory=True)  # a whole folder
    (base / "sub" / "up").symlink_to(base, target_is_directory=True)  # loop back to the top
    (base / "sub" / "self").symlink_to(base / "sub", target_is_directory=True)  # loop to itself
    (base / "alias").symlink_to(base / "sub", target_is_directory=True)  # a second name, no loop
    (base / "dangling.pth").symlink_to(tmp_path / "gone.pth")

    assert names(base) == [
        "a.pth",
        "alias/b.pth",
        "diff/model_index.json",
        "linked.pth",
        "shelf/f.pth",
        "sub/b.pth",
    ]
    # Paths are the links' own (names come from them), the files are the targets.
    assert (base / "linked.pth").resolve() == (elsewhere / "e.pth").resolve()
    assert names(base, recursive=False) == ["a.pth", "linked.pth"]
    bundle = names(base, bundle=lambda p: (p / "model_index.json").is_file())
    assert "diff" in bundle and "diff/model_index.json" not in bundle
    assert list(walk(tmp_path / "missing")) == []


@pytest.mark.parametrize(
    ("kind", "folder", "suffix"),
    [
        ("loras", "Lora", ".safetensors"),
        ("embeddings", "embeddings", ".pt"),
        ("vaes", "VAE", ".safetensors"),
        ("restorers", "GFPGAN", ".pth"),
        ("upscalers", "ESRGAN", ".pth"),
    ],
)
def test_every_asset_kind_follows_the_policy(tmp_path: Path, kind: str, folder: str, suffix: str) -> None:
    root, elsewhere = tmp_path / "models", tmp_path / "disk2"
    touch(root / folder / f"a{suffix}")
    touch(root / folder / f".hidden{suffix}")
    touch(root / folder / ".trash" / f"x{suffix}")
    touch(root / folder / "notes.txt")
    touch(elsewhere / f"b{suffix}")
    (root / folder / "shelf").symlink_to(elsewhere, target_is_directory=True)
    (root / folder / "shelf" / "loop").symlink_to(elsewhere, target_is_directory=True)
    found = ModelManager(root, CPU, torch.float32).assets[kind]
    assert set(found) == ({"a", "b"} if kind == "embeddings" else {"a", "shelf/b"})  # embeddings: by stem


def test_checkpoints_follow_the_policy(tmp_path: Path, models_dir: Path) -> None:
    root, elsewhere = tmp_path / "models", tmp_path / "disk2"
    (elsewhere / "anime").mkdir(parents=True)
    shutil.copy(models_dir / "tiny-sd15.safetensors", elsewhere / "anime" / "m.safetensors")
    (root / "Stable-diffusion").mkdir(parents=True)
    (root / "Stable-diffusion" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "Stable-diffusion" / ".old").symlink_to(elsewhere, target_is_directory=True)
    (root / "Stable-diffusion" / "linked" / "anime" / "back").symlink_to(root, target_is_directory=True)
    assert list(discover(root)) == ["linked/anime/m"]


def test_upscaler_names_are_looked_up_never_joined(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_test_upscaler(root / "ESRGAN", "4x-a1111")
    write_test_upscaler(root / "upscale_models" / "sub", "2x-comfy", 2)
    mm = ModelManager(root, CPU, torch.float32)
    assert mm.asset("upscalers", "sub/2x-comfy") == root.resolve() / "upscale_models" / "sub" / "2x-comfy.pth"
    for bad in ["../ESRGAN/4x-a1111", "/etc/passwd", "sub/../4x-a1111", ""]:
        with pytest.raises(BadName):
            mm.asset("upscalers", bad)
    for unknown in ["a\\b", "./4x-a1111", "2x-comfy"]:
        with pytest.raises(JobError) as err:
            mm.asset("upscalers", unknown)
        assert err.value.code == "unknown_model" and "4x-a1111" in err.value.message
