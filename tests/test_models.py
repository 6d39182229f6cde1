"""The body: causal masking, padding invariance, shapes, parameter groups."""

from __future__ import annotations

import pytest
import torch

from pretrainer.config import ArchConfig, ConfigError
from pretrainer.models import EncoderDecoder, TransformerBody, build_body
from pretrainer.models.heads import pool
from pretrainer.models.positions import apply_rotary, rotary_angles
from pretrainer.training.optim import decay_and_no_decay, lr_multiplier

VOCAB = 100


def body(name: str, norm_position: str = "pre", positions: str = "learned") -> TransformerBody:
    torch.manual_seed(0)
    cfg = ArchConfig(name=name, n_layer=2, d_model=32, n_head=4, d_ff=64, max_len=32, dropout=0.0,
                     norm_position=norm_position, positions=positions)
    return TransformerBody(cfg, VOCAB).eval()


@pytest.mark.parametrize("norm_position,positions", [("pre", "learned"), ("post", "learned"), ("pre", "rotary")])
def test_decoder_future_tokens_do_not_change_earlier_outputs(norm_position, positions):
    model = body("decoder", norm_position, positions)
    ids = torch.randint(5, VOCAB, (2, 16))
    changed = ids.clone()
    changed[:, 10:] = torch.randint(5, VOCAB, (2, 6))
    a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-3)


def test_encoder_sees_both_directions():
    model = body("encoder")
    ids = torch.randint(5, VOCAB, (1, 16))
    changed = ids.clone()
    changed[0, 15] = (changed[0, 15] + 1 - 5) % (VOCAB - 5) + 5
    assert not torch.allclose(model(ids)[:, 0], model(changed)[:, 0], atol=1e-5)


@pytest.mark.parametrize("name,positions", [("encoder", "learned"), ("decoder", "learned"), ("encoder", "rotary")])
def test_padding_does_not_change_real_token_outputs(name, positions):
    model = body(name, positions=positions)
    ids = torch.randint(5, VOCAB, (1, 10))
    padded = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], dim=1).bool()
    assert torch.allclose(model(ids), model(padded, mask)[:, :10], atol=1e-5)


def test_input_longer_than_max_len_is_rejected():
    with pytest.raises(ValueError, match="max_len"):
        body("encoder")(torch.zeros(1, 33, dtype=torch.long))


def test_pooling_methods():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).view(2, 4, 1)  # values 0..7
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool()
    assert pool(hidden, mask, "first").flatten().tolist() == [0.0, 4.0]
    assert pool(hidden, mask, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, mask, "mean").flatten().tolist() == [0.5, 5.5]


def test_weight_decay_skips_norms_biases_and_embeddings():
    model = body("encoder")
    decay, no_decay = decay_and_no_decay(model)
    decay_ids = {id(p) for p in decay}
    assert id(model.tok_emb.weight) not in decay_ids and id(model.stack.pos_emb.weight) not in decay_ids
    assert id(model.stack.blocks[0].attn.qkv.weight) in decay_ids
    assert id(model.stack.blocks[0].attn.qkv.bias) not in decay_ids
    assert id(model.stack.blocks[0].attn_norm.weight) not in decay_ids
    assert len(decay) + len(no_decay) == len(list(model.parameters()))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_warms_up_then_decays_to_min_ratio(schedule):
    factor = lr_multiplier(schedule, warmup_steps=10, total_steps=100, min_ratio=0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) < factor(20)
    assert factor(100) == pytest.approx(0.1)


def test_rotary_scores_depend_only_on_relative_offset():
    cos, sin = rotary_angles(40, 8, torch.device("cpu"))
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> float:
        rq = apply_rotary(q, cos[i : i + 1], sin[i : i + 1])
        rk = apply_rotary(k, cos[j : j + 1], sin[j : j + 1])
        return float((rq * rk).sum())

    assert score(3, 7) == pytest.approx(score(20, 24), abs=1e-5)
    assert score(3, 7) != pytest.approx(score(3, 9), abs=1e-3)


def test_rotary_body_has_no_learned_positions():
    assert body("encoder", positions="rotary").stack.pos_emb is None


def encoder_decoder() -> EncoderDecoder:
    torch.manual_seed(0)
    cfg = ArchConfig(name="encoder_decoder", n_layer=2, n_decoder_layer=1, d_model=32, n_head=4, d_ff=64,
                     max_len=32, dropout=0.0)
    return EncoderDecoder(cfg, VOCAB).eval()


def test_encoder_decoder_decoder_is_causal_and_reads_the_encoder():
    model = encoder_decoder()
    assert len(model.encoder.blocks) == 2 and len(model.decoder.blocks) == 1
    assert model.decoder.blocks[0].cross is not None and model.encoder.blocks[0].cross is None
    source, target = torch.randint(5, VOCAB, (2, 12)), torch.randint(5, VOCAB, (2, 8))
    memory = model(source)
    out = model.decode(target, memory)
    changed_target = target.clone()
    changed_target[:, 5:] = torch.randint(5, VOCAB, (2, 3))
    later = model.decode(changed_target, memory)
    assert torch.allclose(out[:, :5], later[:, :5], atol=1e-6)  # future target tokens are unseen
    changed_source = source.clone()
    changed_source[:, -1] = (changed_source[:, -1] + 1 - 5) % (VOCAB - 5) + 5
    other = model.decode(target, model(changed_source))
    assert not torch.allclose(out[:, 0], other[:, 0], atol=1e-5)  # every target position sees the whole source


def test_encoder_decoder_ignores_source_padding_and_shares_one_embedding():
    model = encoder_decoder()
    assert sum(p is model.tok_emb.weight for p in model.parameters()) == 1
    source, target = torch.randint(5, VOCAB, (1, 9)), torch.randint(5, VOCAB, (1, 6))
    padded = torch.cat([source, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 4)], dim=1).bool()
    plain = model.decode(target, model(source))
    with_pad = model.decode(target, model(padded, mask), mask)
    assert torch.allclose(plain, with_pad, atol=1e-5)


def test_segment_embeddings_make_token_types_matter():
    torch.manual_seed(0)
    cfg = ArchConfig(n_layer=1, d_model=32, n_head=4, d_ff=64, max_len=32, segment_embeddings=True)
    model = TransformerBody(cfg, VOCAB).eval()
    ids = torch.randint(5, VOCAB, (1, 10))
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    assert torch.allclose(model(ids), model(ids, None, torch.zeros_like(ids)))  # types default to sentence A
    assert not torch.allclose(model(ids, None, types)[:, 0], model(ids)[:, 0], atol=1e-5)
    assert body("encoder").seg_emb is None


VARIANTS = [
    {"norm": "rmsnorm"}, {"norm": "layernorm", "norm_position": "post"}, {"norm": "none"},
    {"positions": "sinusoidal"}, {"positions": "rotary"}, {"positions": "alibi"}, {"positions": "alibi_directional"},
    {"positions": "t5_relative_bias"}, {"activation": "relu"}, {"activation": "swiglu"}, {"activation": "geglu"},
    {"bias": False}, {"tie_embeddings": False}, {"dropout": 0.1}, {"scaled_residual_init": False},
]


def variant(name: str, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ArchConfig(name=name, n_layer=2, d_model=32, n_head=4, d_ff=48, max_len=16, **fields)
    return build_body(cfg, VOCAB)


def run_family(model: torch.nn.Module, length: int) -> torch.Tensor:
    ids = torch.randint(5, VOCAB, (2, length))
    if isinstance(model, EncoderDecoder):
        return model.decode(ids[:, : length // 2], model(ids))
    return model(ids)


@pytest.mark.parametrize("fields", VARIANTS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
@pytest.mark.parametrize("name", ["encoder", "decoder", "encoder_decoder"])
def test_every_variant_builds_runs_forward_and_backward(name, fields):
    model = variant(name, **fields)
    out = run_family(model, 12)
    assert out.shape[-1] == 32 and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if fields.get("bias") is False:
        assert not any(name.endswith("bias") for name, _ in model.named_parameters())


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary", "alibi", "alibi_directional",
                                       "t5_relative_bias"])
def test_causal_output_at_t_ignores_later_tokens_for_every_position_kind(positions):
    decoder = variant("decoder", positions=positions).eval()
    ids = torch.randint(5, VOCAB, (1, 12))
    changed = ids.clone()
    changed[0, 7:] = torch.randint(5, VOCAB, (5,))
    assert torch.allclose(decoder(ids)[:, :7], decoder(changed)[:, :7], atol=1e-6)
    seq2seq = variant("encoder_decoder", positions=positions).eval()
    memory = seq2seq(torch.randint(5, VOCAB, (1, 10)))
    assert torch.allclose(seq2seq.decode(ids, memory)[:, :7], seq2seq.decode(changed, memory)[:, :7], atol=1e-6)


@pytest.mark.parametrize("positions", ["rotary", "alibi", "alibi_directional", "t5_relative_bias", "sinusoidal"])
def test_relative_and_sinusoidal_positions_run_beyond_the_training_length(positions):
    model = variant("decoder", positions=positions).eval()
    long = torch.randint(5, VOCAB, (1, 40))  # max_len is 16
    out = model(long)
    assert out.shape == (1, 40, 32) and torch.isfinite(out).all()
    assert torch.allclose(out[:, :10], model(long[:, :10]), atol=1e-5)  # causal: a prefix gives the same states
    with pytest.raises(ValueError, match="learned positions"):
        variant("decoder")(long)


def test_a_symmetric_alibi_encoder_cannot_tell_left_from_right_and_a_directional_one_can():
    ids = torch.randint(5, VOCAB, (2, 12))
    symmetric = variant("encoder", positions="alibi").eval()
    # nothing marks position but |i - j|: the reversed input gives the reversed outputs
    torch.testing.assert_close(symmetric(ids.flip(1)), symmetric(ids).flip(1), atol=1e-5, rtol=1e-5)
    directional = variant("encoder", positions="alibi_directional").eval()
    assert not torch.allclose(directional(ids.flip(1)), directional(ids).flip(1), atol=1e-3)


def test_directional_alibi_heads_alternate_sides_and_see_nothing_on_the_other():
    from pretrainer.models.positions import BLIND_SIDE, alibi_bias, alibi_directions, alibi_slopes

    slopes, looks_right = alibi_slopes(4), alibi_directions(4)
    weights = alibi_bias(slopes, 6, looks_right).softmax(dim=-1)[0]  # (H, T, T) attention with equal scores
    left, right = torch.ones(6, 6).tril().bool(), torch.ones(6, 6).triu().bool()
    assert looks_right.tolist() == [False, True, False, True]
    assert (weights[0::2][:, ~left] == 0).all() and (weights[1::2][:, ~right] == 0).all()
    assert (weights[0::2][:, left] > 0).all() and (weights[1::2][:, right] > 0).all()
    # on its seen side a head keeps ALiBi's -slope * distance
    symmetric = alibi_bias(slopes, 6)[0]
    torch.testing.assert_close(alibi_bias(slopes, 6, looks_right)[0][0][left], symmetric[0][left])
    assert alibi_bias(slopes, 6, looks_right)[0, 1, 3, 0] <= -BLIND_SIDE


def test_directional_alibi_in_a_causal_stack_is_plain_alibi():
    ids = torch.randint(5, VOCAB, (2, 12))
    torch.testing.assert_close(variant("decoder", positions="alibi_directional").eval()(ids),
                               variant("decoder", positions="alibi").eval()(ids))
    seq2seq = variant("encoder_decoder", positions="alibi_directional")
    assert seq2seq.encoder.alibi_looks_right.tolist() == [False, True, False, True]
    assert seq2seq.decoder.alibi_looks_right is None


def test_a_single_directional_head_stays_symmetric_and_sees_both_sides():
    """ELECTRA's generator has one head at the tiny size: looking one way only, it could not
    fill a masked token from its right."""
    torch.manual_seed(0)
    cfg = ArchConfig(n_layer=1, d_model=32, n_head=1, d_ff=48, max_len=16, positions="alibi_directional")
    encoder = build_body(cfg, VOCAB).eval()
    assert encoder.stack.alibi_looks_right is None
    ids = torch.randint(5, VOCAB, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = (ids[0, 6:] + 1 - 5) % (VOCAB - 5) + 5  # other tokens right of position 3
    assert not torch.allclose(encoder(ids)[0, 3], encoder(changed)[0, 3], atol=1e-4)


def test_t5_relative_buckets_follow_t5():
    from pretrainer.models.positions import RelativePositionBias

    bidirectional = RelativePositionBias(2, True, num_buckets=32, max_distance=128)
    relative = torch.tensor([0, 1, -1, 7, 8, -8, 20, 127, 500, -500])
    # 16 buckets per direction: 0..7 exact, then 8 + floor(log(d / 8) / log(128 / 8) * 8) (20 -> 10), capped
    # at 15; positive offsets shifted by 16. Causal: 32 buckets, 16 exact, 20 -> 16 + floor(1.72) = 17.
    assert bidirectional.bucket(relative).tolist() == [0, 17, 1, 23, 24, 8, 26, 31, 31, 15]
    causal = RelativePositionBias(2, False, num_buckets=32, max_distance=128)
    assert causal.bucket(torch.tensor([0, 3, -3, -20, -500])).tolist() == [0, 0, 3, 17, 31]


def test_invalid_variant_pairs_fail_at_config_time():
    with pytest.raises(ConfigError, match="norm_position=pre"):
        ArchConfig(norm="none", norm_position="post")
    with pytest.raises(ConfigError, match="scaled_residual_init"):
        ArchConfig(norm="none", scaled_residual_init=False)
    with pytest.raises(ConfigError, match="alibi"):
        ArchConfig(positions="sinusiodal")
