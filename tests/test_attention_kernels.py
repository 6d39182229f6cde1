"""Attention kernels: FlexAttention (BlockMask + score_mod) against SDPA with a dense mask.

On CPU FlexAttention runs eagerly and forward only (its backward raises there), so the
equivalence tests run under `torch.no_grad()` with the backend forced to "flex". Lengths
need not be multiples of FlexAttention's 128-wide tiles (torch >= 2.6 handles a partial
last tile), so 64, 100 and 128 are all tested. The `gpu` tests check what only CUDA runs:
the compiled kernels, their backward, and bf16.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import create_mask

from pretrainer.config import ArchConfig
from pretrainer.models import EncoderDecoder, TransformerBody, build_body
from pretrainer.models import transformer as transformer_module
from pretrainer.models.attention import (
    AttentionPattern,
    FlexKernel,
    SdpaKernel,
    dense_mask,
    pattern_block_mask,
    pattern_mask_mod,
    self_attention_mask,
    self_attention_pattern,
    set_attention_backend,
    use_flex,
)
from pretrainer.models.transformer import TransformerStack

# The eager CPU reference warns that it is unfused; that is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

VOCAB = 100
B, H, D_MODEL = 2, 4, 64  # heads of 16: FlexAttention's CUDA minimum


def config(name: str, positions: str = "learned", max_len: int = 128, **fields) -> ArchConfig:
    fields = {"n_layer": 2, "d_ff": 64, "dropout": 0.0} | fields
    return ArchConfig(name=name, d_model=D_MODEL, n_head=H, max_len=max_len, positions=positions, **fields)


def model(name: str, positions: str = "learned", **fields) -> TransformerBody | EncoderDecoder:
    torch.manual_seed(0)
    return build_body(config(name, positions, **fields), VOCAB).eval()


def document_ids(length: int) -> torch.Tensor:
    """(2, T): row 0 has three documents, row 1 two of unequal length."""
    first = torch.zeros(length, dtype=torch.long)
    first[length // 5:] = 1
    first[length // 2:] = 2
    second = torch.zeros(length, dtype=torch.long)
    second[length - 7:] = 1
    return torch.stack([first, second])


def padding(length: int) -> torch.Tensor:
    """(2, T) True at real tokens: row 0 unpadded, row 1 with its last 5 padded (inside its
    last document, which keeps real tokens: a document of pads alone would leave its pad
    queries nothing to attend)."""
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length - 5:] = False
    return mask


def patterns(length: int) -> dict[str, AttentionPattern]:
    docs, prefix = document_ids(length), torch.tensor([length // 3, 5])
    return {
        "causal": self_attention_pattern(True),
        "causal+documents": self_attention_pattern(True, document_ids=docs),
        "bidirectional+documents": self_attention_pattern(False, document_ids=docs),
        "prefix_lm": self_attention_pattern(True, prefix_lengths=prefix),
        "prefix_lm+documents": self_attention_pattern(True, prefix_lengths=prefix, document_ids=docs),
        "key_padding": self_attention_pattern(False, padding(length)),
        "key_padding+documents": self_attention_pattern(False, padding(length), document_ids=docs),
    }


def dense_as_full(pattern: AttentionPattern, length: int) -> torch.Tensor:
    """The dense SDPA mask of `pattern` expanded to (B, 1, T, T)."""
    mask, is_causal = dense_mask(pattern, length)
    if is_causal:
        mask = torch.ones(length, length, dtype=torch.bool).tril()
    return mask.expand(B, 1, length, length)


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("length", [64, 100])
@pytest.mark.parametrize("case", list(patterns(64)))
def test_block_mask_mod_gives_the_dense_mask(case, length):
    pattern = patterns(length)[case]
    flex = create_mask(pattern_mask_mod(pattern), B, 1, length, length, device="cpu")  # (B, 1, T, T)
    assert torch.equal(flex, dense_as_full(pattern, length))


@pytest.mark.parametrize("case", list(patterns(64)))
def test_every_real_token_sees_itself_and_no_row_is_empty(case):
    """An empty row would give SDPA NaNs. Pads are hidden as keys, so a pad query sees only
    real tokens, but still some (every row has one)."""
    pattern = patterns(64)[case]
    full = dense_as_full(pattern, 64)  # (B, 1, T, T)
    real = torch.ones(B, 64, dtype=torch.bool) if pattern.key_padding is None else pattern.key_padding
    assert (full.diagonal(dim1=-2, dim2=-1)[:, 0] | ~real).all()
    assert full.any(-1).all()


def test_self_attention_mask_keeps_its_meaning_for_its_callers():
    docs = document_ids(16)
    mask, is_causal = self_attention_mask(True, 16)
    assert mask is None and is_causal  # plain causal stays SDPA's is_causal (flash on CUDA)
    assert self_attention_mask(False, 16) == (None, False)
    mask, is_causal = self_attention_mask(True, 16, padding(16), document_ids=docs)  # a decoder ignores padding
    assert not is_causal
    assert torch.equal(mask, (docs[:, :, None] == docs[:, None, :])[:, None] & torch.ones(16, 16).bool().tril())
    mask, _ = self_attention_mask(False, 16, torch.ones(2, 16, dtype=torch.long))
    assert mask.shape == (2, 1, 1, 16) and mask.all()  # used as given: checking for padding would sync


# ---------------------------------------------------------------- kernels


@pytest.mark.parametrize("length", [64, 128])
@pytest.mark.parametrize("case", list(patterns(64)))
def test_flex_kernel_matches_sdpa_kernel(case, length):
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, length, 8) for _ in range(3))
    pattern = patterns(length)[case]
    block_mask = pattern_block_mask(pattern, length, length, q.device)
    with torch.no_grad():
        flex = FlexKernel(block_mask, None)(q, k, v, 0.0)
        sdpa = SdpaKernel(*dense_mask(pattern, length))(q, k, v, 0.0)
    torch.testing.assert_close(flex, sdpa, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- bodies


def outputs_by_backend(body: torch.nn.Module, run) -> dict[str, torch.Tensor]:
    """`run(body)` with each backend forced, checking that each kernel actually ran."""
    outputs, kernels = {}, []
    attentions = [m for name, m in body.named_modules() if name.endswith((".attn", ".cross"))]
    hooks = [m.register_forward_pre_hook(lambda mod, args: kernels.append(type(args[1]))) for m in attentions]
    for backend, kernel in (("sdpa", SdpaKernel), ("flex", FlexKernel)):
        set_attention_backend(body, backend)
        kernels.clear()
        with torch.no_grad():
            outputs[backend] = run(body)
        assert kernels and set(kernels) == {kernel}
    for hook in hooks:
        hook.remove()
    return outputs


BODY_CASES = [  # (family, positions, inputs)
    ("decoder", "learned", "documents"),
    ("decoder", "rotary", "documents"),
    ("encoder", "learned", "documents"),
    ("decoder", "learned", "prefix+documents"),
    ("encoder", "learned", "padding"),
    ("encoder", "learned", "padding+documents"),
    ("decoder", "alibi", "none"),
    ("decoder", "alibi", "documents"),
    ("encoder", "alibi", "none"),
    ("encoder", "alibi", "documents"),
    ("encoder", "alibi_directional", "padding+documents"),
    ("encoder", "t5_relative_bias", "none"),
    ("encoder", "t5_relative_bias", "padding+documents"),
    ("decoder", "t5_relative_bias", "none"),
    ("decoder", "t5_relative_bias", "prefix+documents"),
]


def body_inputs(inputs: str, length: int) -> dict[str, torch.Tensor]:
    kwargs = {}
    if "documents" in inputs:
        kwargs["document_ids"] = document_ids(length)
    if "prefix" in inputs:
        kwargs["prefix_lengths"] = torch.tensor([length // 3, 5])
    if "padding" in inputs:
        kwargs["attention_mask"] = padding(length)
    return kwargs


@pytest.mark.parametrize("length", [64, 100])
@pytest.mark.parametrize("family,positions,inputs", BODY_CASES)
def test_body_with_flex_matches_body_with_sdpa(family, positions, inputs, length):
    body = model(family, positions)
    ids = torch.randint(5, VOCAB, (B, length))
    kwargs = body_inputs(inputs, length)
    out = outputs_by_backend(body, lambda m: m(ids, **kwargs))
    torch.testing.assert_close(out["flex"], out["sdpa"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "alibi", "alibi_directional", "t5_relative_bias"])
def test_encoder_decoder_with_flex_matches_sdpa_with_source_padding(positions):
    body = model("encoder_decoder", positions, n_decoder_layer=1)
    source, target = torch.randint(5, VOCAB, (B, 64)), torch.randint(5, VOCAB, (B, 40))
    source_mask = padding(64).long()  # 0/1 masks work as well as boolean ones
    out = outputs_by_backend(body, lambda m: m.decode(target, m(source, source_mask), source_mask))
    torch.testing.assert_close(out["flex"], out["sdpa"], atol=1e-5, rtol=1e-5)


def test_one_block_mask_per_stack_forward_shared_by_all_layers(monkeypatch):
    built = []
    real = transformer_module.pattern_block_mask
    monkeypatch.setattr(transformer_module, "pattern_block_mask", lambda *a, **k: built.append(1) or real(*a, **k))
    body = model("decoder")
    set_attention_backend(body, "flex")
    with torch.no_grad():
        body(torch.randint(5, VOCAB, (B, 64)), document_ids=document_ids(64))
    assert len(body.stack.blocks) == 2 and len(built) == 1
    seq2seq = model("encoder_decoder", n_decoder_layer=2)
    set_attention_backend(seq2seq, "flex")
    built.clear()
    with torch.no_grad():
        seq2seq.decode(torch.randint(5, VOCAB, (B, 16)), seq2seq(torch.randint(5, VOCAB, (B, 64))), padding(64))
    assert len(built) == 3  # encoder self-attention, decoder self-attention, decoder cross-attention


def test_legacy_dense_mask_callers_still_run_sdpa():
    stack = TransformerStack(config("encoder", "alibi"), 2).eval()
    set_attention_backend(stack, "flex")
    x, docs = torch.randn(B, 16, D_MODEL), document_ids(16)
    mask, is_causal = self_attention_mask(False, 16, document_ids=docs)
    with torch.no_grad():
        legacy = stack(x, mask, is_causal=is_causal)  # a tensor mask: SDPA even when flex is asked for
        pattern = stack(x, self_attention_pattern(False, document_ids=docs))
    torch.testing.assert_close(legacy, pattern, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="is_causal"):
        stack(x, self_attention_pattern(True), is_causal=True)


# ---------------------------------------------------------------- backend choice


def test_auto_picks_flex_only_on_cuda_for_masks_or_biases():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    def choice(backend, device, head_dim=16, needs_mask_or_bias=True, dropout_active=False):
        return use_flex(backend, device, head_dim, needs_mask_or_bias, dropout_active)

    assert choice("auto", cuda)
    assert not choice("auto", cuda, needs_mask_or_bias=False)  # plain causal: SDPA is_causal, the flash kernel
    assert not choice("auto", cuda, dropout_active=True)  # FlexAttention has no attention dropout
    assert not choice("auto", cuda, head_dim=8)  # below the CUDA kernel's minimum head width
    assert not choice("auto", cpu)
    assert choice("flex", cpu, needs_mask_or_bias=False)
    assert not choice("sdpa", cuda)
    with pytest.raises(ValueError, match="attention_backend"):
        choice("flash", cuda)
    with pytest.raises(ValueError, match="attention_backend"):
        set_attention_backend(model("encoder"), "flash")


def test_attention_dropout_while_training_falls_back_to_sdpa_even_when_flex_is_forced():
    torch.manual_seed(0)
    body = build_body(config("decoder", "alibi", dropout=0.1), VOCAB, attention_backend="flex").train()
    assert body.stack.attention_backend == "flex"
    out = body(torch.randint(5, VOCAB, (B, 32)), document_ids=document_ids(32))
    out.pow(2).mean().backward()  # would raise on CPU had FlexAttention run: it has no CPU backward
    assert body.stack.blocks[0].attn.qkv.weight.grad is not None


# ---------------------------------------------------------------- no host syncs, no graph breaks


COMPILE_CASES = [  # (family, positions, inputs); "memory" = encoder-decoder with a source padding mask
    ("encoder", "learned", "documents"),
    ("decoder", "learned", "documents"),
    ("decoder", "learned", "prefix"),
    ("encoder", "learned", "padding"),
    ("encoder_decoder", "learned", "memory"),
    ("decoder", "rotary", "documents"),
    ("decoder", "alibi", "documents"),
    ("encoder", "t5_relative_bias", "padding"),
    ("encoder_decoder", "t5_relative_bias", "memory"),
]


def forward_of(family: str, inputs: str, length: int):
    ids = torch.randint(5, VOCAB, (B, length))
    if family == "encoder_decoder":
        source_mask = padding(length)
        return lambda m: m.decode(ids[:, : length // 2], m(ids, source_mask), source_mask)
    kwargs = body_inputs(inputs, length)
    return lambda m: m(ids, **kwargs)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("family,positions,inputs", COMPILE_CASES)
def test_forward_compiles_as_one_graph(family, positions, inputs, backend):
    """fullgraph=True fails on any graph break, and a host sync (`bool(tensor)`) is one."""
    body = model(family, positions)
    set_attention_backend(body, backend)
    run = forward_of(family, inputs, 32)
    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="eager")
    with torch.no_grad():  # flex on CPU is forward-only
        torch.testing.assert_close(compiled(body), run(body), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- CUDA

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda_pair(family: str, positions: str):
    """Two copies of one model on CUDA: "auto" (FlexAttention here) and "sdpa"."""
    flex = model(family, positions).cuda().train()
    sdpa = model(family, positions).cuda().train()
    set_attention_backend(sdpa, "sdpa")
    return flex, sdpa


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("family,positions,inputs", [
    ("decoder", "learned", "documents"), ("decoder", "alibi", "prefix+documents"),
    ("encoder", "t5_relative_bias", "padding+documents"), ("encoder", "learned", "padding"),
])
def test_cuda_flex_trains_like_sdpa_in_bf16(family, positions, inputs):
    flex, sdpa = cuda_pair(family, positions)
    ids = torch.randint(5, VOCAB, (B, 128), device="cuda")
    kwargs = {name: t.cuda() for name, t in body_inputs(inputs, 128).items()}
    kernels = []
    flex.stack.blocks[0].attn.register_forward_pre_hook(lambda mod, args: kernels.append(type(args[1])))
    results = []
    for body in (flex, sdpa):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = body(ids, **kwargs)
        out.float().pow(2).mean().backward()
        results.append((out.float(), {n: p.grad.float() for n, p in body.named_parameters() if p.grad is not None}))
    assert kernels == [FlexKernel]  # "auto" chose FlexAttention on CUDA
    (flex_out, flex_grads), (sdpa_out, sdpa_grads) = results
    torch.testing.assert_close(flex_out, sdpa_out, atol=3e-2, rtol=3e-2)
    assert flex_grads.keys() == sdpa_grads.keys()
    for name, grad in flex_grads.items():  # T5's bias table included: flex differentiates its score_mod
        relative_error = (grad - sdpa_grads[name]).norm() / sdpa_grads[name].norm().clamp(min=1e-12)
        assert relative_error < 5e-2, (name, float(relative_error))  # bf16: a few significant digits


@pytest.mark.gpu
@requires_cuda
def test_cuda_plain_causal_keeps_sdpa_is_causal():
    body = model("decoder").cuda()
    kernels = []
    body.stack.blocks[0].attn.register_forward_pre_hook(lambda mod, args: kernels.append(args[1]))
    with torch.no_grad():
        body(torch.randint(5, VOCAB, (B, 64), device="cuda"))
    assert isinstance(kernels[0], SdpaKernel) and kernels[0].is_causal and kernels[0].mask is None


@pytest.mark.gpu
@requires_cuda
def test_cuda_compiled_model_with_documents_matches_eager():
    body = model("decoder", "alibi").cuda()
    ids, docs = torch.randint(5, VOCAB, (B, 256), device="cuda"), document_ids(256).cuda()
    compiled = torch.compile(body, fullgraph=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = compiled(ids, document_ids=docs)
        out.float().pow(2).mean().backward()
        reference = body(ids, document_ids=docs)
    torch.testing.assert_close(out.float(), reference.float(), atol=3e-2, rtol=3e-2)
