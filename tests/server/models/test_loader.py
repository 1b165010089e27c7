"""Offline loading: family detection, the exact single-file round trip, model trees, pickle refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from server.errors import BadName, ModelLoadError
from server.models import arch, detect, loader, testnets
from server.models.files import check_name
from server.models.registry import ModelManager, discover
from server.models.tokenizer import clip_tokenizer

CPU = torch.device("cpu")


def test_tokenizer_is_real_clip_bpe_offline() -> None:
    tok = clip_tokenizer()
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok.get_vocab()) == 49408
    assert clip_tokenizer("!").pad_token_id == 0


@pytest.mark.parametrize("family", ["sd15", "sdxl", "sd15-inpaint"])
def test_single_file_round_trip_is_exact(models_dir: Path, family: str) -> None:
    """Weights written in LDM layout come back through from_single_file bit-identical."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    fam = arch.TINY[family]
    torch.manual_seed(0)  # the generator's seed: rebuild the same random modules
    unet = testnets.from_config(UNet2DConditionModel, fam.configs["unet"])
    vae = testnets.from_config(AutoencoderKL, fam.configs["vae"])
    tes = [testnets.text_model(fam.configs["text_encoder"])]
    if fam.xl:
        tes.append(testnets.text_model(fam.configs["text_encoder_2"]))
    model = loader.load_single_file(models_dir / f"tiny-{family}.safetensors", family, CPU, torch.float32, False)
    assert model.family.name == family and model.unet.config.in_channels == (9 if fam.inpaint else 4)
    for src, dst in [(unet, model.unet), (vae, model.vae), *zip(tes, model.text_encoders, strict=True)]:
        a, b = src.state_dict(), dst.state_dict()
        assert set(a) == set(b)
        assert all(torch.equal(a[k], b[k]) for k in a), type(src).__name__


def test_ldm_layout_has_the_real_key_names(models_dir: Path) -> None:
    sd15 = load_file(str(models_dir / "tiny-sd15.safetensors"))
    assert "model.diffusion_model.input_blocks.0.0.weight" in sd15
    assert (
        "first_stage_model.decoder.mid.attn_1.q.weight" in sd15
        and sd15["first_stage_model.decoder.mid.attn_1.q.weight"].ndim == 4
    )  # 1x1 conv, as in LDM files
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in sd15
    xl = load_file(str(models_dir / "tiny-sdxl.safetensors"))
    assert "conditioner.embedders.1.model.transformer.resblocks.9.attn.in_proj_weight" in xl
    assert "conditioner.embedders.1.model.text_projection" in xl and "model.diffusion_model.label_emb.0.0.weight" in xl


def test_family_detection_from_keys() -> None:
    conv = "model.diffusion_model.input_blocks.0.0.weight"
    sd1 = {conv: (320, 4, 3, 3), "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (1, 1)}
    assert detect.family_name(sd1) == "sd15"
    assert detect.family_name(sd1 | {conv: (320, 9, 3, 3)}) == "sd15-inpaint"
    sd2 = {conv: (320, 4, 3, 3), "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (1, 1)}
    assert detect.family_name(sd2) == "sd2"
    xl = {conv: (320, 4, 3, 3), "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (1, 1)}
    assert detect.family_name(xl) == "sdxl"
    assert detect.family_for(xl, None) is arch.REAL["sdxl"]  # real files get the packaged configs
    with pytest.raises(detect.UnsupportedCheckpoint):
        detect.family_name({"lora_unet_down_blocks_0.lora_down.weight": (4, 320)})


def test_real_configs_describe_the_published_architectures() -> None:
    assert arch.REAL["sd15"].configs["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert arch.REAL["sdxl"].configs["unet"]["cross_attention_dim"] == 2048
    assert arch.REAL["sdxl"].configs["text_encoder_2"]["hidden_size"] == 1280
    assert arch.REAL["sd2"].configs["scheduler"]["prediction_type"] == "v_prediction"
    assert arch.REAL["sd15-inpaint"].configs["unet"]["in_channels"] == 9


def _tree(root: Path, models_dir: Path, rel: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).symlink_to(models_dir / "tiny-sd15.safetensors")


def test_discovery_in_a1111_and_comfyui_trees(tmp_path: Path, models_dir: Path) -> None:
    a1111 = tmp_path / "a1111" / "models"
    _tree(a1111, models_dir, "Stable-diffusion/anime/my-model.safetensors")
    (a1111 / "Lora").mkdir()
    (a1111 / "Lora" / "not-a-checkpoint.safetensors").write_bytes(b"junk")
    assert {k: v.family for k, v in discover(a1111).items()} == {"anime/my-model": "sd15"}
    comfy = tmp_path / "ComfyUI"
    _tree(comfy, models_dir, "models/checkpoints/c.safetensors")
    assert list(discover(comfy)) == ["c"]
    flat = tmp_path / "flat"
    _tree(flat, models_dir, "x.safetensors")
    (flat / "corrupt.safetensors").write_bytes(b"\x00" * 100)
    assert list(discover(flat)) == ["x"]


def test_pickled_ckpt_is_refused_unless_allowed(tmp_path: Path, models_dir: Path) -> None:
    state = load_file(str(models_dir / "tiny-sd15.safetensors"))
    torch.save({"state_dict": state}, tmp_path / "old.ckpt")
    mm = ModelManager(tmp_path, CPU, torch.float32)
    assert mm.entries["old"].pickled
    with pytest.raises(ModelLoadError, match="allow-pickle"):
        mm.get("old")
    with pytest.raises(loader.PickleRefused):
        loader.load_single_file(tmp_path / "old.ckpt", "old", CPU, torch.float32, allow_pickle=False)


def test_diffusers_folder_loads(tmp_path: Path, models_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    m = loader.load_single_file(models_dir / "tiny-sd15.safetensors", "t", CPU, torch.float32, False)
    pipe = StableDiffusionPipeline(
        vae=m.vae,
        text_encoder=m.text_encoders[0],
        tokenizer=m.tokenizers[0],
        unet=m.unet,
        scheduler=__import__("diffusers").EulerDiscreteScheduler.from_config(m.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(tmp_path / "diffusers" / "my-folder-model")
    mm = ModelManager(tmp_path, CPU, torch.float32)
    assert mm.entries["my-folder-model"].family == "diffusers"
    loaded = mm.get("my-folder-model")
    assert torch.equal(loaded.unet.state_dict()["conv_in.weight"], m.unet.state_dict()["conv_in.weight"])


def test_switching_models_keeps_both_when_they_fit(models_dir: Path) -> None:
    mm = ModelManager(models_dir, CPU, torch.float32)
    a = mm.get("tiny-sd15")
    assert mm.get("tiny-sd15") is a  # cached
    mm.get("tiny-sdxl")
    assert mm.resident_name == "tiny-sdxl" and mm.get("tiny-sd15") is a and mm.cache.loads == 2


@pytest.mark.parametrize("name", ["../x", "/abs/path", "a/../../b", "C:\\x", "~/x", "", "a\x00b"])
def test_path_like_names_are_refused(name: str) -> None:
    with pytest.raises(BadName) as err:
        check_name(name)
    assert err.value.code == "bad_name"
