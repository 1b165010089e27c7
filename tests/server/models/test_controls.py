"""Control models: ControlNet discovery (A1111/ComfyUI folders, layouts, kinds), exact offline loading,
pickle refusal, diffusers folders; IP-Adapters with their CLIP vision encoders; names and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from server.errors import MissingModel, ModelLoadError, UnknownModel
from server.models import clip_vision, controlnet, ipadapter, testcontrol
from server.models.arch import TINY
from server.models.controls import ControlModels
from server.models.testmodels import ARCHS
from server.models.testnets import from_config

CPU = torch.device("cpu")


def _reference_controlnet(family: str, seed: int = 0) -> torch.nn.Module:
    """The module `make-test-model` built for this seed (same seeds, same random draws)."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = from_config(ControlNetModel, testcontrol.tiny_controlnet_config(family))
    testcontrol._randomise_zero_convs(net, torch.Generator().manual_seed(seed + 1))
    return net


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("controls")
    ARCHS["controlnet-sd15"](root / "ControlNet", None, 0)
    ARCHS["controlnet-sdxl"](root / "controlnet", None, 0)
    ARCHS["controlnet-sd15"](root / "models" / "ControlNet" / "lines", "control_v11p_sd15_lineart", 3)
    ARCHS["controlnet-sd15"](root / "models" / "controlnet", "my-own-net", 4)
    ARCHS["lora-sd15"](root / "ControlNet", "not-a-controlnet", 1)  # skipped, not an error
    ARCHS["clip-vision"](root / "clip_vision", None, 0)
    ARCHS["ipadapter-sd15"](root / "ipadapter", None, 0)
    ARCHS["ipadapter-sdxl"](root / "IP-Adapter", None, 0)
    return root


def test_test_files_have_the_real_key_layouts(tree: Path) -> None:
    sd15 = load_file(str(tree / "ControlNet" / "tiny-control_v11p_sd15_canny.safetensors"))
    for key in ("input_hint_block.0.weight", "input_hint_block.14.weight", "zero_convs.0.0.weight",
                "middle_block_out.0.weight", "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"):  # fmt: skip
        assert "control_model." + key in sd15
    xl = load_file(str(tree / "controlnet" / "tiny-controlnet-canny-sdxl.safetensors"))
    assert "controlnet_cond_embedding.conv_in.weight" in xl and "add_embedding.linear_1.weight" in xl
    ip = load_file(str(tree / "ipadapter" / "tiny-ip-adapter_sd15.safetensors"))
    assert {"image_proj.proj.weight", "image_proj.norm.weight", "ip_adapter.1.to_k_ip.weight"} <= set(ip)
    assert not any(k.startswith("ip_adapter.0.") for k in ip)  # self-attention slots carry no weights
    enc = load_file(str(tree / "clip_vision" / "tiny-clip-vision.safetensors"))
    assert "vision_model.pre_layrnorm.weight" in enc and "visual_projection.weight" in enc


def test_discovery_in_every_folder_with_kinds_from_names(tree: Path) -> None:
    found = controlnet.discover_controlnets(tree)
    assert {n: (e.family, e.kind, e.layout) for n, e in found.items()} == {
        "tiny-control_v11p_sd15_canny": ("sd15", "canny", "ldm"),
        "tiny-controlnet-canny-sdxl": ("sdxl", "canny", "diffusers"),
        "lines/control_v11p_sd15_lineart": ("sd15", "lineart", "ldm"),
        "my-own-net": ("sd15", None, "ldm"),
    }


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("control_v11p_sd15_canny", "canny"),
        ("control_v11p_sd15s2_lineart_anime", "lineart_anime"),
        ("control_v11p_sd15_softedge", "softedge"),
        ("control_v11f1p_sd15_depth", "depth"),
        ("control_v11p_sd15_openpose", "openpose"),
        ("control_v11p_sd15_normalbae", "normal"),
        ("control_v11p_sd15_scribble", "scribble"),
        ("control_v11p_sd15_seg", "seg"),
        ("control_v11p_sd15_mlsd", "mlsd"),
        ("control_v11f1e_sd15_tile", "tile"),
        ("control_v11p_sd15_inpaint", "inpaint"),
        ("control_v11e_sd15_shuffle", "shuffle"),
        ("control_v11e_sd15_ip2p", "ip2p"),
        ("diffusers_xl_canny_full", "canny"),
        ("controlnet-depth-sdxl-1.0", "depth"),
        ("xinsir/controlnet-scribble-sdxl-1.0", "scribble"),
        ("thibaud_xl_openpose", "openpose"),
        ("soft_edge_xl", "softedge"),
        ("line_art_anime", "lineart_anime"),
        ("my-model", None),
    ],
)
def test_kind_from_file_name(name: str, kind: str | None) -> None:
    assert controlnet.kind_from_name(name) == kind


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_single_file_round_trip_is_exact(tree: Path, family: str) -> None:
    """Written in the released layout, read back through from_single_file with the header's config."""
    name = "tiny-control_v11p_sd15_canny" if family == "sd15" else "tiny-controlnet-canny-sdxl"
    entry = controlnet.discover_controlnets(tree)[name]
    loaded = controlnet.load_controlnet(entry, CPU, torch.float32, False)
    assert _same_weights(_reference_controlnet(family), loaded)


def test_real_configs_describe_the_published_architectures() -> None:
    sd15, xl = controlnet.REAL["sd15"], controlnet.REAL["sdxl"]
    assert sd15["block_out_channels"] == [320, 640, 1280, 1280] and sd15["cross_attention_dim"] == 768
    assert sd15["conditioning_embedding_out_channels"] == [16, 32, 96, 256] and sd15["in_channels"] == 4
    assert xl["transformer_layers_per_block"] == [1, 2, 10] and xl["projection_class_embeddings_input_dim"] == 2816
    assert controlnet.REAL["sd2"]["cross_attention_dim"] == 1024


def test_family_from_real_key_shapes() -> None:
    ldm = {"control_model.input_hint_block.0.weight": (16, 3, 3, 3),
           "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768)}  # fmt: skip
    assert controlnet.family_from_shapes(ldm) == ("sd15", "ldm")
    bare = {k.removeprefix("control_model."): v for k, v in ldm.items()}  # webui conversions drop the prefix
    assert controlnet.family_from_shapes(bare) == ("sd15", "ldm")
    xl = {"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3), "add_embedding.linear_1.weight": (1280, 2816),
          "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048)}  # fmt: skip
    assert controlnet.family_from_shapes(xl) == ("sdxl", "diffusers")
    with pytest.raises(controlnet.NotAControlNet, match="control-LoRA"):
        controlnet.family_from_shapes({"lora_controlnet": (1,), "input_blocks.0.0.weight": (320, 4, 3, 3)})


def test_pth_is_refused_without_allow_pickle_and_loads_with_it(
    tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = load_file(str(tree / "ControlNet" / "tiny-control_v11p_sd15_canny.safetensors"))
    (tmp_path / "ControlNet").mkdir()
    torch.save(state, tmp_path / "ControlNet" / "control_v11p_sd15_canny.pth")
    entry = controlnet.discover_controlnets(tmp_path)["control_v11p_sd15_canny"]
    assert entry.pickled and entry.kind == "canny"
    with pytest.raises(ModelLoadError, match="allow-pickle"):
        ControlModels(tmp_path, CPU, torch.float32).controlnet("control_v11p_sd15_canny")
    # A .pth has no header: its family comes from its widths and it gets that family's packaged config;
    # here the tiny width stands for SD1.5 and the tiny config for the packaged one.
    monkeypatch.setitem(controlnet.FAMILY_BY_CONTEXT, 32, "sd15")
    monkeypatch.setitem(controlnet.REAL, "sd15", testcontrol.tiny_controlnet_config("sd15"))
    loaded = ControlModels(tmp_path, CPU, torch.float32, allow_pickle=True).controlnet("control_v11p_sd15_canny")
    assert _same_weights(_reference_controlnet("sd15"), loaded)


def test_diffusers_folder_is_found_and_loaded(tmp_path: Path) -> None:
    net = _reference_controlnet("sd15", seed=7)
    net.save_pretrained(tmp_path / "controlnet" / "my-canny-folder")
    entry = controlnet.discover_controlnets(tmp_path)["my-canny-folder"]
    assert (entry.layout, entry.family, entry.kind) == ("folder", "sd15", "canny")
    assert _same_weights(net, controlnet.load_controlnet(entry, CPU, torch.float32, False))


def test_manager_caches_and_names_errors(tree: Path) -> None:
    cm = ControlModels(tree, CPU, torch.float32)
    a = cm.controlnet("tiny-control_v11p_sd15_canny")
    assert cm.controlnet("tiny-control_v11p_sd15_canny") is a  # loaded once
    with pytest.raises(UnknownModel, match=r"ControlNet/.*ipadapter/") as err:
        cm.entry("nope")
    assert err.value.code == "unknown_model"
    welcome = cm.welcome()
    assert welcome["clip_vision"] == ["tiny-clip-vision"]
    kinds = {c["name"]: (c["type"], c["family"], c["kind"]) for c in welcome["controls"]}
    assert kinds["tiny-ip-adapter_sdxl"] == ("ipadapter", "sdxl", "reference")
    assert kinds["tiny-controlnet-canny-sdxl"] == ("controlnet", "sdxl", "canny")


def test_ipadapters_find_their_encoder(tree: Path, tmp_path: Path) -> None:
    cm = ControlModels(tree, CPU, torch.float32)
    entry, state, vision = cm.ipadapter("tiny-ip-adapter_sd15")
    assert (entry.family, entry.variant, entry.encoder) == ("sd15", "plain", "tiny-clip-vision")
    assert set(state) == {"image_proj", "ip_adapter"} and "proj.weight" in state["image_proj"]
    assert vision.pixels(__import__("numpy").zeros((40, 60, 3), "uint8")).shape == (1, 3, 32, 32)
    # Without an encoder of the right width the error says what to put where.
    lonely = tmp_path / "lonely"
    ARCHS["ipadapter-sd15"](lonely / "ipadapter", None, 0)
    with pytest.raises(MissingModel, match="clip_vision/") as err:
        ControlModels(lonely, CPU, torch.float32).entry("tiny-ip-adapter_sd15")
    assert err.value.code == "missing_model"


def test_face_id_adapters_are_not_offered() -> None:
    with pytest.raises(ipadapter.NotAnIPAdapter, match="Face-ID"):
        ipadapter.describe_state({"image_proj.perceiver_resampler.proj_in.weight": (1, 1)})
    plus = {"image_proj.latents": (1, 16, 768), "image_proj.proj_in.weight": (768, 1280),
            "ip_adapter.1.to_k_ip.weight": (320, 768)}  # fmt: skip
    assert ipadapter.describe_state(plus) == ("sd15", "plus", 1280)


def test_clip_vision_config_from_real_shapes() -> None:
    p = "vision_model."
    vit_h = {
        p + "embeddings.class_embedding": (1280,),
        p + "embeddings.patch_embedding.weight": (1280, 3, 14, 14),
        p + "embeddings.position_embedding.weight": (257, 1280),
        p + "encoder.layers.0.mlp.fc1.weight": (5120, 1280),
        p + "encoder.layers.31.mlp.fc1.weight": (5120, 1280),
        "visual_projection.weight": (1024, 1280),
    }
    cfg = clip_vision.config_from_shapes(vit_h)
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["image_size"], cfg["projection_dim"]) == (
        1280,
        32,
        224,
        1024,
    )
    with pytest.raises(ValueError, match="not a CLIP vision model"):
        clip_vision.config_from_shapes({"x": (1,)})


def test_installed_adapter_comes_out_exactly(tree: Path) -> None:
    """`install` then its undo leaves the UNet computing exactly what it computed before."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = from_config(UNet2DConditionModel, TINY["sd15"].configs["unet"]).eval()
    x, t, hidden = torch.randn(1, 4, 8, 8), torch.tensor(10), torch.randn(1, 77, 32)
    with torch.no_grad():
        before = unet(x, t, hidden).sample
        entry = ipadapter.discover_ipadapters(tree, clip_vision.discover_clip_vision(tree))["tiny-ip-adapter_sd15"]
        undo = ipadapter.install(unet, [ipadapter.load_state(entry, False)])
        embeds = [torch.randn(1, 1, 16)]
        with_ref = unet(x, t, hidden, added_cond_kwargs={"image_embeds": embeds}).sample
        ipadapter.set_scales(unet, [0.0])
        scale0 = unet(x, t, hidden, added_cond_kwargs={"image_embeds": embeds}).sample
        undo()
        after = unet(x, t, hidden).sample
    assert not torch.equal(before, with_ref)
    assert torch.equal(before, scale0) and torch.equal(before, after)


def test_pickled_adapter_is_refused_then_read_and_described(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The release's `.bin` nests the two parts; what it holds is only known once it is unpickled."""
    flat = testcontrol.ipadapter_state("sd15", 0)
    nested = {part: {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(part + ".")}
              for part in ("image_proj", "ip_adapter")}  # fmt: skip
    (tmp_path / "ipadapter").mkdir()
    torch.save(nested, tmp_path / "ipadapter" / "ip-adapter_sd15.bin")
    ARCHS["clip-vision"](tmp_path / "clip_vision", None, 0)
    with pytest.raises(ModelLoadError, match="allow-pickle"):
        ControlModels(tmp_path, CPU, torch.float32).ipadapter("ip-adapter_sd15")
    monkeypatch.setitem(ipadapter.FAMILY_BY_CONTEXT, 32, "sd15")  # the tiny width stands for SD1.5's
    cm = ControlModels(tmp_path, CPU, torch.float32, allow_pickle=True)
    assert cm.entries["ip-adapter_sd15"].encoder is None  # assumed a ViT-H adapter before reading it
    entry, state, _vision = cm.ipadapter("ip-adapter_sd15")
    assert (entry.variant, entry.image_dim, entry.encoder) == ("plain", 16, "tiny-clip-vision")
    assert all(torch.equal(state[p][k], nested[p][k]) for p in nested for k in nested[p])
