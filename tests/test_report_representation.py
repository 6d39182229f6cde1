"""The representation checks in `pretrainer report`: each configuration's token and text cosines
(with their values at initialisation) in the results table and CSV, and a note naming the rows
whose pretrained body collapsed or pooled texts alike."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pretrainer.report import write_report
from pretrainer.report.build import report_tables
from tests.test_report import CLM, MLM, quiet, select, write_run


def check(token: float, token_init: float, texts: float, texts_init: float) -> dict:
    return {"token_cosine": token, "token_cosine_at_init": token_init, "sequence_cosine": texts,
            "sequence_cosine_at_init": texts_init, "collapsed": token > 0.6 and token > token_init,
            "sequences_alike": texts >= texts_init}


def pretrain(representation: dict | None) -> dict:
    figures = {"steps": 20, "tokens": 4000, "wall_time_s": 5.0, "train_time_s": 4.0, "tokens_per_s": 1000.0,
               "final_eval_loss": 4.0, "eval_losses": [[10, 5.0], [20, 4.0]]}
    return figures | ({"representation": representation} if representation else {})


# A body that fine-tunes no better than scratch, as the flagged bodies measured do.
AT_SCRATCH = {"topic": {"pretrained": {0: 0.22, 1: 0.25}, "scratch": {0: 0.52, 1: 0.55}},
              "agreement": {"pretrained": {0: 0.50, 1: 0.49}, "scratch": {0: 0.51, 1: 0.50}}}


@pytest.fixture
def sweep(tmp_path) -> Path:
    """mlm: healthy in both runs; electra: collapsed in one of two runs; clm: texts alike only; t5: no
    check; prefix_lm: collapsed, yet fine-tunes above scratch (a misjudged body)."""
    root = tmp_path / "sweep"
    healthy = [check(0.24, 0.32, 0.75, 0.92), check(0.22, 0.32, 0.73, 0.92)]
    for seed, representation in enumerate(healthy):
        write_run(root / f"mlm{seed}", ["objective=mlm", f"seed={seed}"], select(MLM, [seed]),
                  pretrain=pretrain(representation))
    for seed, representation in enumerate([check(0.98, 0.32, 0.99, 0.92), check(0.40, 0.32, 0.80, 0.92)]):
        write_run(root / f"electra{seed}", ["objective=electra", f"seed={seed}"], select(AT_SCRATCH, [seed]),
                  pretrain=pretrain(representation))
    write_run(root / "clm", ["objective=clm"], select(AT_SCRATCH, [0]),
              pretrain=pretrain(check(0.20, 0.45, 0.89, 0.84)))
    write_run(root / "t5", ["objective=t5_span"], select(CLM, [0]), pretrain=pretrain(None))
    for seed in range(3):
        write_run(root / f"prefix{seed}", ["objective=prefix_lm", f"seed={seed}"], select(MLM, [seed]),
                  pretrain=pretrain(check(0.64, 0.39, 0.99, 0.85)))
    return root


def test_the_table_shows_both_cosines_with_their_initial_values(sweep):
    results = report_tables(write_report([sweep], console=quiet()))[0]
    token, texts = results.header.index("token cos (init)"), results.header.index("text cos (init)")
    by_objective = {row[1]: row for row in results.rows}
    assert by_objective["mlm"][token] == "0.230 (0.320)" and by_objective["mlm"][texts] == "0.740 (0.920)"
    assert by_objective["electra"][token] == "0.690 (0.320)"
    assert by_objective["t5_span"][token] == "—" and by_objective["t5_span"][texts] == "—"


def test_notes_name_the_collapsed_and_the_texts_alike_rows_once_each(sweep):
    notes = write_report([sweep], console=quiet()).notes
    flagged = [note for note in notes if "not a real result" in note]
    assert len(flagged) == 2
    (electra,) = [note for note in flagged if "objective=electra" in note]
    assert "maps every token to nearly the same vector in 1 of 2 run(s)" in electra
    (clm,) = [note for note in flagged if "objective=clm" in note]
    assert "averages different texts closer together than at initialisation in 1 of 1 run(s)" in clm
    assert not any("objective=mlm" in note or "t5_span" in note or "prefix_lm" in note for note in flagged)
    assert "not a real result" in (sweep / "report.md").read_text()


def test_a_flagged_body_that_beats_scratch_is_reported_as_misjudged(sweep):
    """prefix_lm's three runs are all flagged collapsed, but topic (0.807 against 0.590) and agreement
    (0.707 against 0.510) beat scratch: the paired 95% intervals of the report's gains lie above 0."""
    notes = write_report([sweep], console=quiet()).notes
    (prefix,) = [note for note in notes if "objective=prefix_lm" in note]
    assert "maps every token to nearly the same vector in 3 of 3 run(s)" in prefix
    assert "beats scratch on topic, agreement by more than the seed spread" in prefix
    assert "not a real result" not in prefix


def test_the_csv_has_the_means_and_the_flagged_run_counts(sweep):
    write_report([sweep], console=quiet())
    rows = {row["objective"]: row for row in csv.DictReader((sweep / "report.csv").open())}
    assert float(rows["mlm"]["sequence_cosine"]) == pytest.approx(0.74)
    assert float(rows["mlm"]["sequence_cosine_at_init"]) == pytest.approx(0.92)
    assert rows["electra"]["collapsed_runs"] == "1" and rows["electra"]["sequences_alike_runs"] == "1"
    assert rows["clm"]["collapsed_runs"] == "0" and rows["clm"]["sequences_alike_runs"] == "1"
    assert rows["t5_span"]["token_cosine"] == "" and rows["t5_span"]["collapsed_runs"] == "0"
