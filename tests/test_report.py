"""`pretrainer report`: run dirs written by hand (summary.json + .hydra/overrides.yaml) with
chosen numbers; tables, CSV, bootstrap intervals and plots checked against numpy here."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from pretrainer.report import ReportError, write_report
from pretrainer.report.stats import BCA, T_INTERVAL, paired_interval, unpaired_interval

# Per configuration, task and init: fine-tuning seed -> test accuracy.
MLM = {"topic": {"pretrained": {0: 0.80, 1: 0.84, 2: 0.78}, "scratch": {0: 0.60, 1: 0.62, 2: 0.55}},
       "agreement": {"pretrained": {0: 0.70, 1: 0.73, 2: 0.69}, "scratch": {0: 0.52, 1: 0.50, 2: 0.51}}}
CLM = {"topic": {"pretrained": {0: 0.75, 1: 0.74, 2: 0.79}, "scratch": {0: 0.61, 1: 0.58, 2: 0.57}},
       "agreement": {"pretrained": {0: 0.66, 1: 0.71, 2: 0.64}, "scratch": {0: 0.50, 1: 0.53, 2: 0.52}}}
MLM_EVAL = {0: [[10, 5.0], [20, 4.0]], 1: [[10, 5.2], [20, 4.2]], 2: [[10, 4.9], [20, 3.9]]}


def quiet() -> Console:
    return Console(file=io.StringIO(), width=250)


def init_result(seeds: dict[int, float]) -> dict:
    """One init's fine-tuning result as finetune.run.aggregate writes it."""
    values = list(seeds.values())
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"seeds": [{"seed": s, "dev": {"accuracy": v}, "test": {"accuracy": v}, "best_epoch": 3, "epochs_run": 5,
                       "wall_time_s": 1.0} for s, v in seeds.items()],
            "best_epoch": 3, "wall_time_s": float(len(values)),
            "dev": {"accuracy": float(np.mean(values))}, "test": {"accuracy": float(np.mean(values))},
            "dev_std": {"accuracy": std}, "test_std": {"accuracy": std}}


def write_run(path: Path, overrides: list[str], scores: dict[str, dict[str, dict[int, float]]],
              eval_losses: list | None = None, tokens: int = 4000, tokens_per_s: float = 1000.0,
              train_size: int = 200, pretrain: dict | None = None) -> Path:
    """A run dir as the pipeline leaves it (the parts the report reads)."""
    finetune = {task: {"kind": "classification", "metrics": ["accuracy"], "num_labels": 2, "chance": 0.5,
                       "train_size": train_size, **{init: init_result(s) for init, s in inits.items()}}
                for task, inits in scores.items()}
    if pretrain is None:
        eval_losses = eval_losses or [[10, 5.0], [20, 4.0]]
        pretrain = {"steps": 20, "tokens": tokens, "wall_time_s": tokens / tokens_per_s + 1, "train_time_s":
                    tokens / tokens_per_s, "tokens_per_s": tokens_per_s, "final_eval_loss": eval_losses[-1][1],
                    "eval_losses": eval_losses}
    summary = {"run_name": path.name, "run_dir": str(path), "choices": {"tokenizer": "wordpiece", "arch": "encoder",
               "objective": "mlm", "data": "synthetic"}, "pretrain": pretrain, "finetune": finetune,
               "wall_time_s": 100.0 + tokens / 1000}
    (path / ".hydra").mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    return path


def select(scores: dict, seeds: list[int]) -> dict:
    return {task: {init: {s: v[s] for s in seeds} for init, v in inits.items()} for task, inits in scores.items()}


@pytest.fixture
def sweep(tmp_path) -> Path:
    """objective=mlm as three runs (seed=0,1,2), objective=clm as one run with three fine-tuning seeds."""
    root = tmp_path / "sweep"
    for seed in range(3):
        write_run(root / str(seed), ["objective=mlm", "trainer.max_steps=20", f"seed={seed}"], select(MLM, [seed]),
                  eval_losses=MLM_EVAL[seed], tokens=4000, tokens_per_s=1000.0 + 100 * seed)
    write_run(root / "3", ["objective=clm", "trainer.max_steps=20", "finetune.seeds=[0,1,2]"], CLM,
              eval_losses=[[10, 6.0], [20, 5.0]], tokens=5000, tokens_per_s=2000.0)
    return root


def reference_paired_ci(differences: list[float]) -> tuple[float, float]:
    """Fewer than 5 seeds: the t-interval of the mean difference, from scipy's one-sample t-test."""
    interval = stats.ttest_1samp(differences, 0.0).confidence_interval(0.95)
    return interval.low, interval.high


def reference_unpaired_ci(a: list[float], b: list[float]) -> tuple[float, float]:
    """Fewer than 5 seeds on a side: Welch's interval, from scipy's two-sample t-test."""
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return interval.low, interval.high


def test_one_row_per_configuration_with_numpy_means(sweep):
    result = write_report([sweep], console=quiet())
    assert [c.label for c in result.configurations] == ["objective=mlm", "objective=clm"]
    assert result.varying_keys == ["objective"]
    assert result.constant_overrides == {"trainer.max_steps": "20"}
    mlm, clm = result.rows
    for row, scores in ((mlm, MLM), (clm, CLM)):
        assert row["seeds"] == 3
        for task in ("topic", "agreement"):
            for init in ("pretrained", "scratch"):
                values = list(scores[task][init].values())
                assert row[f"{task}_{init}_accuracy_mean"] == pytest.approx(np.mean(values))
                assert row[f"{task}_{init}_accuracy_std"] == pytest.approx(np.std(values, ddof=1))
                assert row[f"{task}_{init}_seeds"] == 3
    assert mlm["runs"] == 3 and clm["runs"] == 1
    assert mlm["final_eval_loss"] == pytest.approx(np.mean([4.0, 4.2, 3.9]))
    assert mlm["tokens_per_s"] == pytest.approx(np.mean([1000.0, 1100.0, 1200.0]))
    assert clm["tokens"] == 5000 and mlm["budget_kind"] == "steps"


def test_markdown_and_console_show_the_table(sweep):
    console = quiet()
    write_report([sweep], console=console)
    text = (sweep / "report.md").read_text()
    assert "trainer.max_steps=20" in text.splitlines()[3]  # the header line of constant overrides
    assert "| # | objective | seeds |" in text
    topic_mlm = list(MLM["topic"]["pretrained"].values())
    assert f"{np.mean(topic_mlm):.4f} ± {np.std(topic_mlm, ddof=1):.4f}" in text
    assert "![loss](loss.png)" in text
    printed = console.file.getvalue()
    assert "objective=clm" in printed and "Differences to the baseline #0" in printed


def test_csv_parses_with_one_column_per_value(sweep):
    result = write_report([sweep], console=quiet())
    with open(sweep / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["objective"] for row in rows] == ["mlm", "clm"]
    assert float(rows[1]["topic_scratch_accuracy_std"]) == pytest.approx(result.rows[1]["topic_scratch_accuracy_std"])
    assert float(rows[0]["final_eval_loss"]) == pytest.approx(np.mean([4.0, 4.2, 3.9]))


def test_paired_difference_to_baseline_with_three_seeds_is_scipys_t_interval(sweep):
    result = write_report([sweep], console=quiet())
    topic = next(c for c in result.comparisons if c.task == "topic")
    differences = [CLM["topic"]["pretrained"][s] - MLM["topic"]["pretrained"][s] for s in range(3)]
    assert topic.label == "objective=clm" and topic.reference == "objective=mlm"
    assert topic.difference.paired and topic.difference.n_a == 3
    assert topic.difference.estimate == pytest.approx(np.mean(differences))
    assert (topic.difference.low, topic.difference.high) == pytest.approx(reference_paired_ci(differences))
    assert topic.difference.method == T_INTERVAL and "t-interval" in (sweep / "report.md").read_text()
    assert topic.difference.low < min(differences)  # wider than the three values: a bootstrap would not be


def test_pretrained_minus_scratch_is_paired_by_seed(sweep):
    result = write_report([sweep], console=quiet())
    gain = next(g for g in result.gains if g.label == "objective=mlm" and g.task == "agreement")
    differences = [MLM["agreement"]["pretrained"][s] - MLM["agreement"]["scratch"][s] for s in range(3)]
    assert gain.difference.paired and gain.difference.excludes_zero
    assert (gain.difference.low, gain.difference.high) == pytest.approx(reference_paired_ci(differences))
    assert "Pretrained − scratch" in (sweep / "report.md").read_text()


def test_baseline_by_label_substring_or_index(sweep):
    by_name = write_report([sweep], baseline="clm", console=quiet())
    by_index = write_report([sweep], baseline="1", console=quiet())
    assert by_name.baseline.label == by_index.baseline.label == "objective=clm"
    assert {c.label for c in by_name.comparisons} == {"objective=mlm"}
    flipped = next(c for c in by_name.comparisons if c.task == "topic").difference
    assert flipped.estimate == pytest.approx(np.mean(list(MLM["topic"]["pretrained"].values()))
                                             - np.mean(list(CLM["topic"]["pretrained"].values())))
    with pytest.raises(ReportError, match="matches no configuration"):
        write_report([sweep], baseline="t5_span", console=quiet())
    with pytest.raises(ReportError, match="matches 2"):
        write_report([sweep], baseline="objective", console=quiet())
    with pytest.raises(ReportError, match="2 configurations"):
        write_report([sweep], baseline=5, console=quiet())


def test_seeds_pool_over_runs_and_inside_runs_unpaired_when_seed_sets_differ(sweep, tmp_path):
    """arch=decoder: two runs (trainer.seed=1,2), each fine-tuned with seeds 0 and 1: four values,
    which cannot pair with the baseline's three seeds."""
    values = {1: {0: 0.70, 1: 0.72}, 2: {0: 0.77, 1: 0.69}}
    extra = tmp_path / "extra"
    for trainer_seed, seeds in values.items():
        scores = {"topic": {"pretrained": seeds}}  # no scratch baseline
        write_run(extra / str(trainer_seed), ["objective=mlm", "trainer.max_steps=20", "arch=decoder",
                                              f"trainer.seed={trainer_seed}"], scores)
    result = write_report([sweep, extra], console=quiet())
    decoder = result.configurations[2]
    assert decoder.label == "objective=mlm arch=decoder" and result.varying_keys == ["objective", "arch"]
    pooled = [v for seeds in values.values() for v in seeds.values()]
    assert decoder.scores["topic"]["pretrained"].n == 4 == decoder.n_seeds()
    assert result.rows[2]["topic_pretrained_accuracy_mean"] == pytest.approx(np.mean(pooled))
    assert result.rows[2]["topic_pretrained_accuracy_std"] == pytest.approx(np.std(pooled, ddof=1))
    assert result.rows[2]["topic_scratch_accuracy_mean"] is None
    comparison = next(c for c in result.comparisons if c.label == decoder.label and c.task == "topic")
    baseline = list(MLM["topic"]["pretrained"].values())
    assert not comparison.difference.paired
    assert (comparison.difference.low, comparison.difference.high) == pytest.approx(
        reference_unpaired_ci(pooled, baseline))
    assert not any(g.label == decoder.label for g in result.gains)  # no scratch: no gain row


def test_single_seed_gives_no_interval(tmp_path):
    write_run(tmp_path / "a", ["objective=mlm"], select(MLM, [0]))
    write_run(tmp_path / "b", ["objective=clm"], select(CLM, [0]))
    result = write_report([tmp_path], console=quiet())
    comparison = result.comparisons[0].difference
    assert comparison.low is None and comparison.high is None and "single seed" in comparison.note
    assert comparison.estimate == pytest.approx(CLM["topic"]["pretrained"][0] - MLM["topic"]["pretrained"][0])
    assert result.rows[0]["topic_pretrained_accuracy_std"] is None
    assert "undefined: a single seed" in (tmp_path / "report.md").read_text()


def test_plots_exist_and_open(sweep):
    from PIL import Image

    result = write_report([sweep], console=quiet())
    assert {p.name for p in result.plots} == {"loss.png", "downstream.png"}
    assert any("learning_curve.png not written" in note for note in result.notes)
    for path in result.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200


def test_eval_loss_curve_is_the_mean_at_shared_steps(sweep):
    """Runs without metrics.jsonl: the eval points come from summary.json, at step x tokens per step."""
    from pretrainer.report.loss_curves import config_curves

    result = write_report([sweep], console=quiet())
    curves = config_curves(result.configurations[0])
    assert curves.train is None and curves.eval.steps == [10, 20] and curves.eval.tokens == [2000, 4000]
    assert curves.eval.mean == pytest.approx([np.mean([5.0, 5.2, 4.9]), np.mean([4.0, 4.2, 3.9])])


def test_learning_curve_when_train_size_varies(tmp_path):
    from PIL import Image

    for objective, scores in (("mlm", MLM), ("clm", CLM)):
        for size in (50, 200):
            write_run(tmp_path / f"{objective}{size}", [f"objective={objective}", f"finetune.train_size={size}",
                                                         "finetune.seeds=[0,1,2]"], scores, train_size=size)
    result = write_report([tmp_path], console=quiet())
    assert result.varying_keys == ["objective", "finetune.train_size"]
    assert len(result.configurations) == 4
    path = tmp_path / "learning_curve.png"
    assert path in result.plots
    with Image.open(path) as image:
        assert image.size[0] > 300


def test_a_single_run_dir_works(sweep):
    result = write_report([sweep / "3"], console=quiet())
    assert len(result.configurations) == 1 and result.varying_keys == []
    assert result.constant_overrides == {"objective": "clm", "trainer.max_steps": "20"}
    assert result.comparisons == [] and len(result.gains) == 2
    assert (sweep / "3" / "report.md").is_file() and (sweep / "3" / "report.csv").is_file()


def test_finetune_only_runs_without_scratch_do_not_crash(tmp_path):
    for seed in range(2):
        scores = {"topic": {"pretrained": {seed: 0.7 + seed / 10}}}
        path = write_run(tmp_path / f"ft{seed}", ["init=runs/x", f"seed={seed}"], scores, pretrain={})
        summary = json.loads((path / "summary.json").read_text())
        (path / "summary.json").write_text(json.dumps(summary | {"init": "runs/x/checkpoints/last.pt"}))
    result = write_report([tmp_path], console=quiet())
    assert result.rows[0]["final_eval_loss"] is None and result.rows[0]["budget_kind"] is None
    assert result.rows[0]["topic_pretrained_accuracy_mean"] == pytest.approx(0.75)
    assert [p.name for p in result.plots] == ["downstream.png"]
    assert any(note.startswith("loss.png not written") for note in result.notes)
    assert result.gains == []


def test_runs_without_finetuning_or_overrides_file(tmp_path):
    path = write_run(tmp_path / "run", [], {})
    (path / ".hydra" / "overrides.yaml").unlink()
    result = write_report([path], console=quiet())
    assert result.tasks == {} and result.rows[0]["tokens"] == 4000
    assert any("downstream.png not written" in note for note in result.notes)
    assert any("without .hydra/overrides.yaml" in note for note in result.notes)


def test_missing_summary_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no summary.json under"):
        write_report([tmp_path / "empty"], console=quiet())
    with pytest.raises(ReportError, match="no such directory"):
        write_report([tmp_path / "absent"], console=quiet())


def test_budget_kind_and_natural_run_order(tmp_path):
    for job in (10, 2):
        pretrain = {"tokens": 100, "eval_losses": [], "budget": {"kind": "flops", "value": 1e12}}
        write_run(tmp_path / str(job), [f"trainer.lr={job}"], {}, pretrain=pretrain)
    result = write_report([tmp_path], console=quiet())
    assert [c.label for c in result.configurations] == ["trainer.lr=2", "trainer.lr=10"]
    assert result.rows[0]["budget_kind"] == "flops"


def test_three_seeds_get_a_t_interval_with_its_known_width():
    """d = 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.3027 -> 0.2 ± 0.2484 (a bootstrap of these
    three values has 10 distinct resamples and would give about [0.1, 0.3])."""
    low, high, method = paired_interval([0.1, 0.2, 0.3])
    assert method == T_INTERVAL
    assert (low, high) == pytest.approx((0.2 - 0.24841, 0.2 + 0.24841), abs=1e-4)
    low, high, method = unpaired_interval([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])  # Welch: dof 2.94
    assert method == T_INTERVAL and (low, high) == pytest.approx((-6.1554, 2.1554), abs=1e-3)
    assert paired_interval([0.05, 0.05, 0.05]) == (0.05, 0.05, T_INTERVAL)  # no spread, no width


def test_five_seeds_or_more_get_a_reproducible_bca_bootstrap_close_to_normal_theory():
    rng = np.random.default_rng(123)
    differences = rng.normal(0.05, 0.02, size=40)
    low, high, method = paired_interval(differences)
    assert method == BCA and (low, high, method) == paired_interval(differences)
    half_width = 1.96 * differences.std(ddof=0) / np.sqrt(len(differences))
    assert low == pytest.approx(differences.mean() - half_width, abs=0.15 * half_width)
    assert high == pytest.approx(differences.mean() + half_width, abs=0.15 * half_width)
    a, b = rng.normal(0.8, 0.02, size=30), rng.normal(0.7, 0.03, size=30)
    low, high, method = unpaired_interval(a, b)
    half_width = 1.96 * np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert method == BCA and (low + high) / 2 == pytest.approx(a.mean() - b.mean(), abs=0.15 * half_width)
    assert high - low == pytest.approx(2 * half_width, rel=0.15)


def test_zero_shot_accuracies_get_a_table_csv_columns_and_a_plot(tmp_path):
    """Two objectives x two seeds with known accuracies: mean ± std per phenomenon in report.md
    and the CSV, the mean of each run's mean, and zero_shot.png."""
    accuracy = {("mlm", 0): {"agreement": 0.9, "word_order": 0.6}, ("mlm", 1): {"agreement": 0.8, "word_order": 0.7},
                ("clm", 0): {"agreement": 0.6, "word_order": 0.9}, ("clm", 1): {"agreement": 0.7, "word_order": 0.8}}
    for (objective, seed), phenomena in accuracy.items():
        run = write_run(tmp_path / f"{objective}-{seed}", [f"objective={objective}", f"seed={seed}"], MLM)
        summary = json.loads((run / "summary.json").read_text())
        summary["zero_shot"] = {"phenomena": phenomena, "pairs": {name: 100 for name in phenomena},
                                "mean": sum(phenomena.values()) / 2}
        (run / "summary.json").write_text(json.dumps(summary))
    result = write_report([tmp_path], console=quiet())
    mlm = next(row for row in result.rows if row["objective"] == "mlm")
    assert mlm["zero_shot_agreement_mean"] == pytest.approx(0.85)
    assert mlm["zero_shot_agreement_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert mlm["zero_shot_mean_mean"] == pytest.approx(np.mean([0.75, 0.75]))
    text = (tmp_path / "report.md").read_text()
    assert "Zero-shot minimal pairs" in text and "0.850 ± 0.071" in text and "0.650 ± 0.071" in text
    assert "zero_shot.png" in {p.name for p in result.plots}


def test_downstream_plot_zooms_to_the_data_states_the_seeds_and_drops_empty_error_bars(sweep, tmp_path):
    from pretrainer.report.build import write_report
    from pretrainer.report.plots import downstream_figure

    result = write_report([sweep], console=quiet())
    tasks = {task: "accuracy" for task in MLM}
    figure = downstream_figure(result.configurations, tasks, result.varying_keys)
    axes = figure.axes[0]
    low, high = axes.get_ylim()
    assert 0.45 < low < 0.5 and 0.84 < high < 0.9  # chance 0.5 and the bars (0.55-0.86), not 0 to 1
    assert "mean ± std over 3 seeds" in figure.get_suptitle()
    from matplotlib.container import BarContainer, ErrorbarContainer

    def count(axes, kind):
        return sum(isinstance(container, kind) for container in axes.containers)

    assert count(axes, BarContainer) == 4 == count(axes, ErrorbarContainer)  # 3 seeds: every bar has its spread
    single = tmp_path / "single"
    write_run(single / "0", ["objective=mlm"], select(MLM, [0]))
    one = write_report([single], console=quiet())
    figure = downstream_figure(one.configurations, tasks, one.varying_keys)
    assert count(figure.axes[0], BarContainer) == 2 and count(figure.axes[0], ErrorbarContainer) == 0  # one seed
    assert "over 1 seed " in figure.get_suptitle()
