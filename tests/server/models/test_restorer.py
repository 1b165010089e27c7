from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage import data

from server.errors import BadName
from server.imaging.faces import detect_faces
from server.models import restorer
from server.models.restorer import (
    MissingRestorer,
    discover_restorers,
    load_restorer,
    resolve_restorer,
    restore_face,
    restore_faces,
    write_test_restorer,
)
from tests.server.jobs.edit_helpers import ASTRONAUT_FACE


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_test_restorer(root / "GFPGAN", "gfpgan", name="GFPGANv1.4")
    return root


@pytest.fixture(scope="module")
def gfpgan(models_root):
    return load_restorer(resolve_restorer(models_root, "GFPGANv1.4"))


def test_tiny_gfpgan_is_small_real_layout_and_detected(models_root, gfpgan):
    path = models_root / "GFPGAN" / "GFPGANv1.4.pth"
    assert path.stat().st_size < 4_000_000  # the released file is 348 MB
    assert gfpgan.architecture.id == "GFPGAN" and gfpgan.purpose == "FaceSR"
    sd = torch.load(path, weights_only=True)["params_ema"]
    real = restorer._build("gfpgan").state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in real.items()}
    # Random, not constant: a conv keeps the scale of the architecture's own init.
    w = sd["conv_body_down.3.conv1.weight"].contiguous()
    assert float(w.std()) == pytest.approx(float(real["conv_body_down.3.conv1.weight"].std()), rel=0.2)


def test_restore_end_to_end_on_astronaut(gfpgan):
    img = data.astronaut()
    out, rects = restore_faces(img, gfpgan)
    assert len(rects) == 1
    (rect,) = rects
    assert rect.intersection(ASTRONAUT_FACE).area > 0.8 * ASTRONAUT_FACE.area and rect.w < 200 and rect.h < 200
    changed = np.any(out != img, axis=2)
    assert changed[ASTRONAUT_FACE.slices].mean() > 0.5
    outside = np.ones(changed.shape, bool)
    outside[rect.slices] = False
    assert not changed[outside].any()
    far = np.ones(changed.shape, bool)
    far[rect.padded(8).clamped(512, 512).slices] = False
    np.testing.assert_array_equal(out[far], img[far])


def test_no_face_is_an_empty_result_not_an_error(gfpgan):
    img = data.coffee()
    out, rects = restore_faces(img, gfpgan)
    assert rects == [] and np.array_equal(out, img)


class _Recorder(torch.nn.Module):
    """Stands in for the net: records its input, returns it (so restore is the identity if the maths is right)."""

    def forward(self, x, weight=None):
        self.seen = (x.min().item(), x.max().item(), weight)
        return (x, None)


def _fake(arch):
    return SimpleNamespace(architecture=SimpleNamespace(id=arch), device="cpu", dtype=torch.float32, model=_Recorder())


@pytest.mark.parametrize("arch", ["GFPGAN", "CodeFormer"])
def test_restore_face_uses_minus_one_to_one_range(arch):
    aligned = np.zeros((512, 512, 3), np.uint8)
    aligned[:, 256:] = 255
    aligned[100, 100] = (10, 128, 200)
    desc = _fake(arch)
    out = restore_face(desc, aligned, fidelity=0.7)
    lo, hi, weight = desc.model.seen
    assert (lo, hi) == (-1.0, 1.0)
    assert weight == (0.7 if arch == "CodeFormer" else None)
    np.testing.assert_array_equal(out, aligned)
    with pytest.raises(ValueError, match="512x512"):
        restore_face(desc, aligned[:256])


class _Invert(torch.nn.Module):
    def forward(self, x, weight=None):
        return (-x, None)


def test_blend_weight_scales_the_change():
    img = data.astronaut()
    desc = SimpleNamespace(
        architecture=SimpleNamespace(id="GFPGAN"), device="cpu", dtype=torch.float32, model=_Invert()
    )
    faces = detect_faces(img)
    full, rects = restore_faces(img, desc, faces=faces)
    half, _ = restore_faces(img, desc, faces=faces, blend=0.5)
    d_full = np.abs(full.astype(int) - img).sum()
    d_half = np.abs(half.astype(int) - img).sum()
    assert len(rects) == 1 and 0.4 * d_full < d_half < 0.6 * d_full
    same, none = restore_faces(img, desc, faces=faces, blend=0.0)
    assert none == [] and np.array_equal(same, img)


def test_discovery_layouts_and_names(tmp_path):
    for rel in ("GFPGAN/GFPGANv1.4.pth", "Codeformer/codeformer-v0.1.0.pth", "facerestore_models/sub/x.safetensors"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "GFPGAN" / "notes.txt").write_text("not a model")
    (tmp_path / "Stable-diffusion").mkdir()
    (tmp_path / "Stable-diffusion" / "sd.pth").write_bytes(b"")
    found = discover_restorers(tmp_path)
    assert set(found) == {"GFPGANv1.4", "codeformer-v0.1.0", "sub/x"}
    assert resolve_restorer(tmp_path) == tmp_path / "GFPGAN" / "GFPGANv1.4.pth"
    assert resolve_restorer(tmp_path, "sub/x").name == "x.safetensors"
    # A1111 webui root (models/GFPGAN) works too.
    webui = tmp_path / "webui"
    (webui / "models" / "GFPGAN").mkdir(parents=True)
    (webui / "models" / "GFPGAN" / "GFPGANv1.3.pth").write_bytes(b"")
    assert set(discover_restorers(webui)) == {"GFPGANv1.3"}


@pytest.mark.parametrize("name", ["../GFPGAN/GFPGANv1.4", "/etc/passwd", "C:\\x", "~/x"])
def test_names_cannot_escape_the_root(tmp_path, name):
    with pytest.raises(BadName) as err:
        resolve_restorer(tmp_path, name)
    assert err.value.code == "bad_name"


def test_missing_model_names_file_and_folder(tmp_path):
    with pytest.raises(MissingRestorer) as err:
        resolve_restorer(tmp_path)
    msg = str(err.value)
    assert "GFPGANv1.4.pth" in msg and str(tmp_path / "GFPGAN") in msg and "codeformer-v0.1.0.pth" in msg
    assert err.value.code == "missing_model"
    with pytest.raises(MissingRestorer, match=r"codeformer-v0\.1\.0\.pth into .*Codeformer"):
        resolve_restorer(tmp_path, "codeformer-v0.1.0")
    with pytest.raises(MissingRestorer, match="does not exist"):
        load_restorer(tmp_path / "nope.pth")


def test_non_restorer_file_is_refused(tmp_path):
    path = tmp_path / "junk.pth"
    torch.save({"foo.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(Exception, match="not a model spandrel recognises"):
        load_restorer(path)


def test_tiny_codeformer_is_detected(tmp_path):
    path = write_test_restorer(tmp_path / "Codeformer", "codeformer")
    assert path.stat().st_size < 4_000_000
    desc = load_restorer(resolve_restorer(tmp_path, "tiny-codeformer"))
    assert desc.architecture.id == "CodeFormer" and desc.purpose == "FaceSR"


@pytest.mark.slow
def test_codeformer_restores_with_fidelity(tmp_path):
    desc = load_restorer(write_test_restorer(Path(tmp_path), "codeformer"))
    aligned = data.astronaut()[:512, :512].copy()
    out = restore_face(desc, aligned, fidelity=0.5)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8 and out.std() > 0
