"""Prompt syntax (++/--, BREAK, long prompts, blend), LoRA math and embedding files, on a tiny model in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from server.errors import BadPrompt, UnknownModel
from server.models import embeddings, lora, testassets
from server.models.registry import ModelManager
from server.models.tokenizer import clip_tokenizer
from server.prompt import (
    BREAK,
    CHUNK,
    Blend,
    encode,
    encode_pair,
    extract_networks,
    n_chunks_for,
    parse_weights,
)
from server.prompt.encode import chunks_of


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syntax-models")
    from server.models.testmodels import ARCHS

    ARCHS["sd15"](root / "Stable-diffusion", "tiny-sd15", 0)
    ARCHS["lora-sd15"](root / "Lora", None, 1)
    ARCHS["embedding-sd15"](root / "embeddings", None, 2)
    return root


@pytest.fixture(scope="module")
def model(tree: Path):
    manager = ModelManager(tree, torch.device("cpu"), torch.float32)
    return manager.get("tiny-sd15")


def weights_of(text: str) -> dict[str, float]:
    return {frag.strip(): round(w, 4) for frag, w in parse_weights(text) if frag.strip()}


def test_plus_minus_weights() -> None:
    assert weights_of("a red cat++ on a mat") == {"a red": 1.0, "cat": 1.21, "on a mat": 1.0}
    assert weights_of("a cat-- sits") == {"a": 1.0, "cat": 0.81, "sits": 1.0}
    assert weights_of("word+++, end") == {"word": 1.331, ", end": 1.0}
    # compel group weight replaces the bracket's own x1.1; combines with an explicit weight
    assert weights_of("(red cat)++ x") == {"red cat": 1.21, "x": 1.0}
    assert weights_of("(red cat:1.5)- x") == {"red cat": 1.35, "x": 1.0}
    # hyphens inside words and escaped brackets are text
    assert weights_of("a t-shirt, sci-fi") == {"a t-shirt, sci-fi": 1.0}
    assert weights_of(r"\(x\)++") == {"(x)++": 1.0}
    # A1111 syntax is unchanged
    assert weights_of("a (b:1.3) [c] (d)") == {"a": 1.0, "b": 1.3, "c": round(1 / 1.1, 4), "d": 1.1}


def test_break_splits_chunks() -> None:
    tok = clip_tokenizer()
    assert [f for f, _ in parse_weights("(a BREAK b:1.5)")] == ["a", BREAK, "b"]
    chunks = chunks_of(tok, "a cat BREAK a dog")
    assert len(chunks) == 2
    assert [t[0] for t in chunks[0]] == tok("a cat", add_special_tokens=False).input_ids
    assert [t[0] for t in chunks[1]] == tok("a dog", add_special_tokens=False).input_ids
    assert len(chunks_of(tok, "BREAK a cat BREAK")) == 1  # empty chunks are not made


def test_long_prompt_is_chunked_not_truncated() -> None:
    tok = clip_tokenizer()
    text = " ".join(["cat"] * 200)
    chunks = chunks_of(tok, text)
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 50]
    assert n_chunks_for(tok, text) == 3


def test_encode_break_plus_and_long_tail(model) -> None:
    plain = encode(model, "a red cat on a mat", 1).embeds
    boosted = encode(model, "a red cat++ on a mat", 1).embeds
    assert boosted.shape == plain.shape and not torch.equal(plain, boosted)
    assert torch.equal(encode(model, "a red cat on a mat", 1).embeds, plain)  # deterministic
    broken = encode(model, "a red cat BREAK on a mat", 2).embeds
    assert broken.shape[1] == 2 * 77
    assert not torch.allclose(broken[:, :77], encode(model, "a red cat on a mat", 2).embeds[:, :77])
    # the tail of a 200-token prompt reaches the conditioning
    head = " ".join(["cat"] * 190)
    a, b = encode(model, head + " red dog", 3).embeds, encode(model, head + " blue bird", 3).embeds
    assert a.shape[1] == 3 * 77
    assert torch.equal(a[:, :154], b[:, :154]) and not torch.equal(a[:, 154:], b[:, 154:])


def test_blend_mixes_embeddings(model) -> None:
    rabbit, _ = encode_pair(model, "rabbit", "")
    frog, _ = encode_pair(model, "frog", "")
    half, _ = encode_pair(model, "rabbit", "", blend=Blend("frog", 0.5))
    assert torch.allclose(half.embeds, (rabbit.embeds + frog.embeds) / 2, atol=1e-6)
    zero, _ = encode_pair(model, "rabbit", "", blend=Blend("frog", 0.0))
    assert torch.equal(zero.embeds, rabbit.embeds)


def test_extract_networks() -> None:
    text, tags = extract_networks("a <lora:foo:0.5> cat <lora:bar> <LORA:foo:0.25:1>")
    assert text == "a  cat  "
    assert [(t.name, t.unet, t.te) for t in tags] == [("foo", 0.75, 1.5), ("bar", 1.0, 1.0)]
    with pytest.raises(BadPrompt, match="bad LoRA weight"):
        extract_networks("<lora:foo:lots>")


def test_lora_patch_math_and_exact_restore(tree: Path, model) -> None:
    path = tree / "Lora" / "lora-sd15.safetensors"
    pairs = {p.module: p for p in lora.load_pairs(path)}
    linear = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight
    conv3 = model.unet.down_blocks[0].resnets[0].conv1.weight
    conv1 = model.unet.down_blocks[0].attentions[0].proj_in.weight
    originals = [w.clone() for w in (linear, conv3, conv1)]
    _, restore = lora.apply_loras(model, [("l", path, 0.7, 1.0)])
    for w, orig, key in zip(
        (linear, conv3, conv1),
        originals,
        (
            "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
            "down_blocks_0_resnets_0_conv1",
            "down_blocks_0_attentions_0_proj_in",
        ),
        strict=True,
    ):
        p = pairs[key]
        expect = (p.up.flatten(1) @ p.down.flatten(1)).reshape(w.shape) * (p.alpha / p.down.shape[0]) * 0.7
        assert conv3.ndim == 4 and torch.allclose(w - orig, expect, atol=1e-5)
    restore()
    assert all(torch.equal(w, o) for w, o in zip((linear, conv3, conv1), originals, strict=True))


def test_lora_layouts_and_wrong_family(tree: Path, model, tmp_path: Path) -> None:
    kohya = testassets.lora_state_dict(testassets.arch.TINY["sd15"], "kohya", seed=3)
    diff = testassets.lora_state_dict(testassets.arch.TINY["sd15"], "diffusers", seed=3)
    pk = {(p.component, p.module): p for p in lora.parse_state_dict(kohya)}
    pd = {(p.component, p.module): p for p in lora.parse_state_dict(diff)}
    assert pk.keys() == pd.keys() and len(pk) == 60
    assert all(torch.equal(pk[k].up, pd[k].up) for k in pk)
    # the old attention-processor form maps to the same layer
    attn = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora"
    proc = lora.parse_state_dict({f"{attn}.down.weight": torch.ones(1, 2), f"{attn}.up.weight": torch.ones(2, 1)})
    assert proc[0].module == "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"
    xl = tmp_path / "xl.safetensors"
    save_file(testassets.lora_state_dict(testassets.arch.TINY["sdxl"], "kohya-ldm", seed=1), str(xl))
    before = model.unet.conv_in.weight.clone()
    with pytest.raises(lora.BadLora):  # an SDXL LoRA does not fit an SD1.5 model: refused, weights untouched
        lora.apply_loras(model, [("xl", xl, 1.0, 1.0)])
    assert torch.equal(model.unet.conv_in.weight, before)


def test_embedding_file_layouts(tmp_path: Path) -> None:
    vec = torch.randn(3, 32)
    torch.save({"string_to_param": {"*": vec}, "name": "x"}, tmp_path / "a.pt")
    save_file({"emb_params": vec}, str(tmp_path / "b.safetensors"))
    save_file({"clip_l": vec, "clip_g": torch.randn(3, 64)}, str(tmp_path / "c.safetensors"))
    assert torch.equal(embeddings.load(tmp_path / "a.pt")["any"], vec)
    assert torch.equal(embeddings.load(tmp_path / "b.safetensors")["any"], vec)
    both = embeddings.load(tmp_path / "c.safetensors")
    assert embeddings.for_encoder(both, "clip_g", 64, "c").shape == (3, 64)
    with pytest.raises(embeddings.BadEmbedding, match="width"):
        embeddings.for_encoder(embeddings.load(tmp_path / "a.pt"), "clip_l", 768, "a")

    class Evil:
        def __reduce__(self):  # noqa: ANN204 - pickle hook
            return (print, ("pwned",))

    torch.save({"string_to_param": {"*": vec}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        embeddings.load(tmp_path / "evil.pt")


def test_embedding_substitution(model) -> None:
    plain = encode(model, "a photo of embedding-sd15", 1).embeds
    assert not torch.equal(plain, encode(model, "a photo of something", 1).embeds)
    # the token table is never modified
    table = model.text_encoders[0].get_input_embeddings().weight.clone()
    encode(model, "embedding:embedding-sd15 again", 1)
    assert torch.equal(table, model.text_encoders[0].get_input_embeddings().weight)
    with pytest.raises(UnknownModel) as err:
        encode(model, "embedding:missing-one", 1)
    assert err.value.code == "unknown_model" and "missing-one" in err.value.message
