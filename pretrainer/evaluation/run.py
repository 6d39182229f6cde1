"""Zero-shot evaluation of a pretrained model: after pretraining in `train` (before
fine-tuning), every `zero_shot.every` steps during it (a `training.loop.Probe`: the curve
of when each phenomenon is learned), and on any run, checkpoint or Hugging Face directory
with `pretrainer evaluate init=...` (its results land in that command's run dir as `summary.json`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Tokenizer

from pretrainer.config import ArchConfig, Config, ConfigError, ObjectiveConfig
from pretrainer.evaluation.minimal_pairs import Pairs, pair_accuracies, pair_suite, scorer_for
from pretrainer.evaluation.scoring import SentenceScorer
from pretrainer.hashing import write_text_atomic
from pretrainer.loggers import RunLogger, Stopwatch, info, print_key_values, warn, write_summary
from pretrainer.run_dir import ZERO_SHOT_PHASE, hold_run_dir
from pretrainer.tokenization import SpecialIds
from pretrainer.training.device import resolve_device

if TYPE_CHECKING:
    from pretrainer.training.loop import Probe


def run_pairs(cfg: Config, distributed: bool) -> dict[str, Pairs]:
    """The minimal pairs a `train` run scores (phenomenon -> pairs; {} for none), read once and
    before any work, so that a bad BLiMP file fails before pretraining, not after it. With
    zero_shot.every they must exist, and the model must be whole on one process (not FSDP2's
    shards over several)."""
    suite = pair_suite(cfg.zero_shot, cfg.data.source, cfg.data.seed)
    if not cfg.zero_shot.every:
        return suite
    if distributed and cfg.trainer.parallel == "fsdp":
        raise ConfigError("zero_shot.every scores the whole model on rank 0 during pretraining, which "
                          "trainer.parallel=fsdp shards over the processes: use trainer.parallel=ddp, or "
                          "zero_shot.every=0 (the pairs are still scored once pretraining ends)")
    if not suite:
        raise ConfigError(f"zero_shot.every={cfg.zero_shot.every} but there are no minimal pairs to score: "
                          "give zero_shot.blimp_files=[...] or zero_shot.suite=synthetic")
    return suite


def zero_shot_results(suite: dict[str, Pairs], model: torch.nn.Module, tokenizer: Tokenizer,
                      device: torch.device) -> dict[str, Any] | None:
    """Minimal-pair accuracies of a PretrainingModel (None without pairs)."""
    if not suite:
        return None
    clock = Stopwatch()
    results = pair_accuracies(scorer_for(model, SpecialIds.of(tokenizer)), tokenizer, suite, device)
    results["wall_time_s"] = clock.elapsed()
    print_zero_shot(results)
    return results


def zero_shot_probe(every: int, suite: dict[str, Pairs], tokenizer: Tokenizer, device: torch.device) -> Probe | None:
    """The minimal pairs scored every `every` pretraining steps (zero_shot.every; None when 0)."""
    if not every:
        return None
    from pretrainer.training.loop import Probe  # here: `pretrainer evaluate` needs no training loop

    special = SpecialIds.of(tokenizer)

    def measure(model: torch.nn.Module) -> dict[str, float | None]:
        results = pair_accuracies(scorer_for(model, special), tokenizer, suite, device)
        return {**results["phenomena"], "mean": results["mean"]}

    return Probe(every, ZERO_SHOT_PHASE, measure)


def zero_shot_curve(probes: list[dict[str, Any]], final: dict[str, Any], step: int,
                    tokens: int) -> list[dict[str, Any]]:
    """summary.json's zero_shot.curve: the points scored during pretraining, then the final
    results at the last step, each {"step", "tokens", "phenomena", "mean"}."""
    points = [{"step": point["step"], "tokens": point["tokens"],
               "phenomena": {k: v for k, v in point["values"].items() if k != "mean"},
               "mean": point["values"].get("mean")} for point in probes if point["step"] < step]
    return [*points, {"step": step, "tokens": tokens, "phenomena": final["phenomena"], "mean": final["mean"]}]


def print_zero_shot(results: dict[str, Any]) -> None:
    rows = [(name, f"{accuracy:.3f} ({results['pairs'][name]} pairs)")
            for name, accuracy in results["phenomena"].items()]
    rows.append(("mean (chance 0.5)", "—" if results["mean"] is None else f"{results['mean']:.3f}"))
    print_key_values("Zero-shot minimal pairs: accuracy", rows)
    if results["skipped"]:
        warn("minimal pairs longer than the model reads (arch.max_len) were skipped: " +
             ", ".join(f"{name} {count}" for name, count in results["skipped"].items()))


def evaluate_init(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """`pretrainer evaluate init=<run dir | checkpoint | HF dir>`: the minimal pairs of the config
    (`zero_shot.*`; the embedded ones with zero_shot.suite=synthetic) on that model."""
    if not cfg.init:
        raise ConfigError("pretrainer evaluate needs init=<run dir, checkpoint or Hugging Face dir>")
    with hold_run_dir(run_dir):
        clock = Stopwatch()
        if not pair_suite(cfg.zero_shot, "none", 0) and cfg.zero_shot.suite == "none":  # checked before the model
            raise _no_pairs()
        device = resolve_device(cfg.trainer.device)
        scorer, tokenizer, described, data = load_scorer(cfg.init, device)
        # auto: the embedded pairs for a model pretrained on the embedded corpus (held out from its seed's text)
        suite = pair_suite(cfg.zero_shot, data.get("source", "none"), data.get("seed", cfg.data.seed))
        if not suite:
            raise _no_pairs()
        info(f"scoring {sum(len(p) for p in suite.values())} minimal pairs in {len(suite)} phenomena with "
             f"{described}")
        results = pair_accuracies(scorer, tokenizer, suite, device)
        print_zero_shot(results)
        summary = {"run_name": cfg.run_name or run_dir.name, "run_dir": str(run_dir), "init": str(cfg.init),
                   "scorer": scorer.kind, "zero_shot": results, "wall_time_s": clock.elapsed()}
        write_text_atomic(run_dir / "tokenizer" / "tokenizer.json", tokenizer.to_str())
        with RunLogger(run_dir, cfg.logger, summary["run_name"], asdict(cfg), job_type="evaluate") as logger:
            write_summary(run_dir, summary, logger)
    return summary


def _no_pairs() -> ConfigError:
    return ConfigError("no minimal pairs to score: give zero_shot.blimp_files=[...] (BLiMP-format JSONL files) or "
                       "zero_shot.suite=synthetic (the embedded grammar's pairs)")


def load_scorer(init: str, device: torch.device) -> tuple[SentenceScorer, Tokenizer, str, dict[str, Any]]:
    """(scorer, tokenizer, a description, the data config it was pretrained on ({}: unknown))."""
    path = Path(init).expanduser()
    if (path / "config.json").is_file():
        return _hf_scorer(path, device)
    from pretrainer.finetune.from_checkpoint import checked_tokenizer
    from pretrainer.models import build_body
    from pretrainer.objectives import build_objective
    from pretrainer.training.checkpoint import model_state, resolve_checkpoint
    from pretrainer.training.loop import PretrainingModel

    checkpoint, payload, source_run = resolve_checkpoint(init)
    tokenizer = checked_tokenizer(source_run, payload)
    special, vocab = SpecialIds.of(tokenizer), tokenizer.get_vocab_size()
    config = payload["config"]
    body = build_body(ArchConfig(**config["arch"]), vocab)
    objective_cfg = ObjectiveConfig(**{k: v for k, v in config["objective"].items()
                                       if k in ObjectiveConfig.__dataclass_fields__})
    model = PretrainingModel(body, build_objective(objective_cfg, body, special, vocab))
    model.load_state_dict(model_state(payload))
    return scorer_for(model.to(device), special), tokenizer, f"{checkpoint} ({objective_cfg.name})", config["data"]


# Special tokens of an imported tokenizer: ours ([CLS] ...) or the original model's names.
_HF_NAMES = {"start": ("[CLS]", "<s>", "<|endoftext|>"), "end": ("[SEP]", "</s>", "<|endoftext|>"),
             "mask": ("[MASK]", "<mask>"), "pad": ("[PAD]", "<pad>", "<|endoftext|>")}


def _hf_scorer(path: Path, device: torch.device) -> tuple[SentenceScorer, Tokenizer, str, dict[str, Any]]:
    """A local transformers directory (BERT masked LM: PLL; GPT-2: causal; T5: sentinel input)."""
    from pretrainer.interop import load_hf_model
    from pretrainer.interop.hf import build_lm_head
    from pretrainer.tokenization import read_tokenizer

    if not (path / "tokenizer.json").is_file():
        raise ConfigError(f"init={path}: the Hugging Face directory has no tokenizer.json")
    tokenizer = read_tokenizer(path / "tokenizer.json")
    try:
        imported = load_hf_model(path)
        head = build_lm_head(imported)
    except (ValueError, ImportError) as error:
        raise ConfigError(f"init={path}: {error}") from error
    ids = {role: next((tokenizer.token_to_id(n) for n in names if tokenizer.token_to_id(n) is not None), None)
           for role, names in _HF_NAMES.items()}
    kind = {"encoder": "pll", "decoder": "causal", "encoder_decoder": "t5"}[imported.arch.name]
    if kind == "t5" and tokenizer.token_to_id("[CLS]") is None:
        ids["start"] = ids["pad"]  # Hugging Face's T5 decoder starts from <pad>
    ids["sentinel"] = tokenizer.token_to_id("<extra_id_0>")
    missing = [role for role in ("start", "end", "pad") + {"pll": ("mask",), "t5": ("sentinel",)}.get(kind, ())
               if ids[role] is None]
    if missing:
        raise ConfigError(f"init={path}: its tokenizer lacks the {', '.join(missing)} token(s) the {kind} scorer needs")
    scorer = SentenceScorer(kind, imported.body.to(device), head.to(device), **ids)
    return scorer, tokenizer, f"{path} ({imported.arch.name}, imported)", {}
