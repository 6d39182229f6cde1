"""Zero-shot minimal pairs: the scorers of every family on tiny models, the BLiMP-format
reader, and `pretrainer evaluate` / the pipeline writing the accuracies."""

from __future__ import annotations

import json

import pytest
import torch

from pretrainer.config import ArchConfig, ObjectiveConfig
from pretrainer.evaluation import scoring
from pretrainer.evaluation.minimal_pairs import PairFileError, blimp_files, read_blimp_jsonl, scorer_for
from pretrainer.evaluation.scoring import SentenceScorer, _masked_copies
from pretrainer.models import build_body
from pretrainer.objectives import build_objective
from pretrainer.tokenization import SpecialIds
from pretrainer.training.loop import PretrainingModel
from tests.faults.conftest import invoke_cli

SPECIAL = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, count=5, sentinels=(29,))
VOCAB = 30
FAMILIES = {"mlm": "encoder", "electra": "encoder", "clm": "decoder", "t5_span": "encoder_decoder",
            "bart": "encoder_decoder"}


def tiny_model(objective: str) -> PretrainingModel:
    torch.manual_seed(0)
    arch = ArchConfig(name=FAMILIES[objective], n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=32)
    body = build_body(arch, VOCAB)
    return PretrainingModel(body, build_objective(ObjectiveConfig(name=objective), body, SPECIAL, VOCAB))


def sentences(count: int, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (count,), generator=generator)
    return [torch.randint(5, 29, (int(n),), generator=generator).tolist() for n in lengths]


@pytest.mark.parametrize("objective", sorted(FAMILIES))
def test_scores_do_not_depend_on_batching_or_padding(objective, monkeypatch):
    """Each sentence scored alone equals it scored among others of other lengths, in small or large chunks."""
    scorer = scorer_for(tiny_model(objective), SPECIAL)
    batch = sentences(12)
    together = scorer.scores(batch, torch.device("cpu"))
    alone = torch.cat([scorer.scores([sentence], torch.device("cpu")) for sentence in batch])
    monkeypatch.setattr(scoring, "SCORING_BATCH_TOKENS", 24)  # a few rows per forward
    chunked = scorer.scores(batch, torch.device("cpu"))
    assert together.shape == (12,) and torch.isfinite(together).all() and (together < 0).all()
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-4)
    torch.testing.assert_close(chunked, together, rtol=0, atol=1e-4)
    assert len(set(together.tolist())) == 12  # the scores depend on the sentence


def test_each_family_gets_the_scorer_its_objective_defines():
    kinds = {objective: scorer_for(tiny_model(objective), SPECIAL).kind for objective in FAMILIES}
    assert kinds == {"mlm": "pll", "electra": "discriminator", "clm": "causal", "t5_span": "t5", "bart": "bart"}


def test_pseudo_log_likelihood_masks_each_position_exactly_once():
    scorer = SentenceScorer("pll", torch.nn.Identity(), torch.nn.Identity(), pad=0, start=2, end=3, mask=4)
    batch = [[7, 8, 9], [10, 11]]
    rows, owners, positions = _masked_copies(scorer, batch)
    assert owners == [0, 0, 0, 1, 1] and positions == [1, 2, 3, 1, 2]
    for row, owner, position in zip(rows, owners, positions, strict=True):
        original = [2, *batch[owner], 3]
        assert row.count(4) == 1 and row[position] == 4
        assert row[:position] + row[position + 1:] == original[:position] + original[position + 1:]


def test_a_decoder_trained_on_a_one_rule_language_prefers_the_grammatical_sentence():
    """Toy language: token t is always followed by t + 1 (cycling over 5..12). After a little
    training the causal scorer ranks every valid sequence above the same one with two
    neighbours swapped; untrained, it does not."""
    model = tiny_model("clm")
    scorer = scorer_for(model, SPECIAL)

    def valid(first: int, length: int) -> list[int]:
        return [5 + (first - 5 + i) % 8 for i in range(length)]

    pairs = [(valid(5 + i % 8, 6), valid(5 + i % 8, 6)) for i in range(16)]
    pairs = [(good, good[:2] + [good[3], good[2]] + good[4:]) for good, _ in pairs]

    def accuracy() -> float:
        flat = [sentence for pair in pairs for sentence in pair]
        scores = scorer.scores(flat, torch.device("cpu")).view(-1, 2)
        return float((scores[:, 0] > scores[:, 1]).double().mean())

    untrained = accuracy()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(150):
        starts = torch.randint(5, 13, (16,), generator=generator).tolist()
        ids = torch.tensor([[SPECIAL.cls, *valid(start, 10)] for start in starts])
        logits = model.objective.head(model.body(ids))[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert accuracy() == 1.0 and untrained < 0.9


# ---- BLiMP-format files ------------------------------------------------------------------------------------------


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_blimp_reader_names_the_phenomenon_by_uid_or_file(tmp_path):
    write_jsonl(tmp_path / "agreement.jsonl", [
        {"sentence_good": "The cat sleeps.", "sentence_bad": "The cat sleep.", "UID": "regular_plural_agreement"},
        {"sentence_good": "The cats sleep.", "sentence_bad": "The cats sleeps.", "UID": "regular_plural_agreement"}])
    write_jsonl(tmp_path / "negation.jsonl",
                [{"sentence_good": "No one ever came.", "sentence_bad": "Someone ever came."}])
    assert read_blimp_jsonl(tmp_path / "agreement.jsonl") == (
        "regular_plural_agreement", [("The cat sleeps.", "The cat sleep."), ("The cats sleep.", "The cats sleeps.")])
    assert read_blimp_jsonl(tmp_path / "negation.jsonl")[0] == "negation"
    assert [p.name for p in blimp_files([str(tmp_path)])] == ["agreement.jsonl", "negation.jsonl"]


@pytest.mark.parametrize("line, problem", [
    ('{"sentence_good": "A b."}', "sentence_bad"),
    ("not json", "JSONDecodeError"),
    ('{"sentence_good": "", "sentence_bad": "x"}', "non-empty"),
])
def test_a_bad_blimp_line_names_the_file_and_line(tmp_path, line, problem):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"sentence_good": "A b.", "sentence_bad": "B a."}\n' + line + "\n")
    with pytest.raises(PairFileError, match=rf"pairs.jsonl:2: .*{problem}"):
        read_blimp_jsonl(path)


def test_blimp_reader_takes_a_byte_order_mark_and_line_separators_inside_strings(tmp_path):
    """What Excel or Notepad saves (a BOM), and what json.dumps(ensure_ascii=False) writes for
    U+2028 / U+2029 / U+0085 inside a sentence (unescaped: JSON allows it), read as the pairs."""
    good, bad = "Er kam\u2028heim.", "Er kamen\u0085heim\u2029."
    records = [{"sentence_good": good, "sentence_bad": bad}, {"sentence_good": "A b.", "sentence_bad": "B a."}]
    path = tmp_path / "german.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode())
    assert read_blimp_jsonl(path) == ("german", [(good, bad), ("A b.", "B a.")])


def test_invalid_utf8_in_a_blimp_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"sentence_good": "A b.", "sentence_bad": "B a."}\n{"sentence_good": "x\xff"}\n')
    with pytest.raises(PairFileError, match=r"pairs\.jsonl:2: invalid UTF-8 \(byte 0xff at column 21\); fix the file$"):
        read_blimp_jsonl(path)


def test_a_missing_pair_file_is_named(tmp_path):
    with pytest.raises(PairFileError, match="nowhere.jsonl"):
        blimp_files([str(tmp_path / "nowhere.jsonl")])


# ---- in the pipeline and on any run --------------------------------------------------------------------------------


@pytest.fixture
def pair_file(tmp_path):
    path = tmp_path / "word_order.jsonl"
    write_jsonl(path, [{"sentence_good": "the cat sat on a mat .", "sentence_bad": "cat the sat on a mat ."},
                       {"sentence_good": "dogs ran far .", "sentence_bad": "ran dogs far ."}])
    return path


@pytest.mark.parametrize("objective, arch", [("mlm", "encoder"), ("clm", "decoder")])
def test_train_scores_minimal_pairs_and_evaluate_rescores_the_run(tmp_path, text_corpus, pair_file, objective, arch):
    from tests.conftest import TINY

    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    common = [f"cache_dir={tmp_path / 'cache'}", f"zero_shot.blimp_files=[{pair_file}]"]
    assert invoke_cli("train", *TINY, "data=text_files", f"data.paths=[{text_corpus}]", "finetune=none",
                  f"objective={objective}", f"arch={arch}", *common, f"hydra.run.dir={run_dir}") == 0
    trained = json.loads((run_dir / "summary.json").read_text())["zero_shot"]
    assert trained["pairs"] == {"word_order": 2} and trained["phenomena"]["word_order"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert invoke_cli("evaluate", f"init={run_dir}", *common, f"hydra.run.dir={eval_dir}") == 0
    evaluated = json.loads((eval_dir / "summary.json").read_text())
    assert evaluated["zero_shot"]["phenomena"] == trained["phenomena"]  # the same model, the same scores
    assert evaluated["scorer"] == {"mlm": "pll", "clm": "causal"}[objective]
    if objective == "clm":  # the same model exported to transformers (GPT-2), imported back to score
        pytest.importorskip("transformers")
        assert invoke_cli("export", str(run_dir), "--out", str(tmp_path / "hf")) == 0
        assert invoke_cli("evaluate", f"init={tmp_path / 'hf'}", *common, f"hydra.run.dir={tmp_path / 'hf_eval'}") == 0
        imported = json.loads((tmp_path / "hf_eval" / "summary.json").read_text())["zero_shot"]
        assert imported["phenomena"] == trained["phenomena"]


def test_evaluate_without_pairs_says_how_to_give_them(tmp_path, capsys):
    assert invoke_cli("evaluate", f"init={tmp_path}", "zero_shot.suite=none", f"hydra.run.dir={tmp_path / 'eval'}") == 2
    assert "no minimal pairs to score" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_pairs_longer_than_the_model_reads_are_skipped_and_counted():
    """arch.max_len=32 with learned positions: a 40-token sentence cannot be scored; its pair is
    left out (counted in `skipped`), the others are scored."""
    from pretrainer.evaluation.minimal_pairs import pair_accuracies

    class Words:  # a tokenizer stand-in: one id per word
        def encode_batch(self, texts, add_special_tokens=False):
            return [type("Encoding", (), {"ids": [5 + len(w) % 20 for w in t.split()]}) for t in texts]

    scorer = scorer_for(tiny_model("mlm"), SPECIAL)
    long = " ".join(["word"] * 40)
    results = pair_accuracies(scorer, Words(), {"short": [("a bb ccc", "ccc bb a")], "long": [(long, long + " x")],
                                                 "mixed": [("a b", "b a"), (long, "a")]}, torch.device("cpu"))
    assert results["pairs"] == {"short": 1, "long": 0, "mixed": 1}
    assert results["skipped"] == {"long": 1, "mixed": 1}
    assert set(results["phenomena"]) == {"short", "mixed"}
