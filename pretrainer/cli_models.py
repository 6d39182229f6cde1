"""The commands that take a model: `pretrainer export` (to transformers), `generate` and
`fill-mask` (look at what a model learned). Plain argparse; torch is imported only when a
command runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pretrainer.cli_common import fail, run_dir_parser
from pretrainer.errors import UserError

MODEL_HELP = "a run dir, a checkpoint file or a local Hugging Face directory (an exported run)"


def _parser(name: str, description: str, text_help: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"pretrainer {name}", description=description)
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("text", help=text_help)
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, mps")
    return parser


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    """A bad model path, format or option ends the command with one line (exit 2), no traceback."""
    try:
        yield
    except (UserError, ValueError, FileNotFoundError, ImportError) as error:
        fail(error, command)


def _load(model: str, device_name: str):
    """(scorer, tokenizer, device) of any model `pretrainer evaluate` reads."""
    from pretrainer.evaluation.run import load_scorer
    from pretrainer.training.device import resolve_device

    device = resolve_device(device_name)
    scorer, tokenizer, _, _ = load_scorer(model, device)
    return scorer, tokenizer, device


def generate_command(args: list[str]) -> None:
    """`pretrainer generate MODEL "prompt" [--greedy | --temperature T --top-k K --seed S] [--num N]`."""
    parser = _parser("generate", "Continue a prompt with a decoder, or fill its gaps ([MASK], or one at the end) "
                     "with an encoder-decoder (T5: the first gap's text; BART: the rewritten text).", "the prompt")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--greedy", action="store_true", help="the most likely token each step (default: sample)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same samples")
    parser.add_argument("--num", type=int, default=1, help="how many samples (seeds seed, seed+1, ...)")
    parsed = parser.parse_args(args)
    from pretrainer.evaluation.generation import Decoding, generate

    with _one_line_errors("generate"):
        scorer, tokenizer, device = _load(parsed.model, parsed.device)
        for sample in range(1 if parsed.greedy else max(1, parsed.num)):
            decoding = Decoding(parsed.max_new_tokens, parsed.greedy, parsed.temperature, parsed.top_k,
                                parsed.seed + sample)
            print(generate(scorer, tokenizer, parsed.text, decoding, device), flush=True)


def fill_mask_command(args: list[str]) -> None:
    """`pretrainer fill-mask MODEL "text with [MASK]" [--top-k K]`."""
    parser = _parser("fill-mask", "Predict each [MASK] of a text with a masked-LM model: the top k tokens and "
                     "their probabilities.", "the text, with one or more [MASK]")
    parser.add_argument("--top-k", type=int, default=5)
    parsed = parser.parse_args(args)
    from pretrainer.evaluation.generation import MASK_TEXT, fill_mask

    with _one_line_errors("fill-mask"):
        scorer, tokenizer, device = _load(parsed.model, parsed.device)
        for number, candidates in enumerate(fill_mask(scorer, tokenizer, parsed.text, parsed.top_k, device), 1):
            shown = "  ".join(f"{token} {probability:.3f}" for token, probability in candidates)
            print(f"{MASK_TEXT} {number}: {shown}", flush=True)


def export_command(args: list[str]) -> None:
    """`pretrainer export RUN_DIR [--out DIR]`."""
    parsed = run_dir_parser("export", "Write a run as a transformers model (BERT or MegatronBERT masked LM, "
                            "ELECTRA discriminator, GPT-2 LM or T5) with its tokenizer.",
                            "output directory (default: RUN_DIR/hf)").parse_args(args)
    import warnings

    from pretrainer.interop import export_hf

    with _one_line_errors("export"), warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", UserWarning)
        out = export_hf(parsed.run_dir, parsed.out or parsed.run_dir / "hf")
    for note in notes:  # what the export left out (a pre-LN ELECTRA's discriminator head), as one line
        if note.category is UserWarning:
            print(f"pretrainer export: note: {note.message}", file=sys.stderr)
        else:  # a library's own warning (deprecations...): shown as it would have been, not as our note
            warnings.showwarning(note.message, note.category, note.filename, note.lineno)
    print(f"wrote {out}")
