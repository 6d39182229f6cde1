"""Typed configuration: one dataclass per config group, checked when it is built.

The YAML files under `conf/` fill these dataclasses; Hydra validates keys and types at
compose time against the schema registered in `pretrainer.cli`, and `__post_init__`
validates choices and ranges when `OmegaConf.to_object` builds the objects. Library code
receives these dataclasses only: it never imports Hydra or OmegaConf.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields

from pretrainer.config_checks import check_data_source, check_finetune_body, check_task_source
from pretrainer.config_columns import ColumnMaps, SplitColumns  # noqa: F401 (part of this schema)
from pretrainer.config_evaluation import PlanConfig, ZeroShotConfig
from pretrainer.config_tree import field_paths
from pretrainer.errors import ConfigError  # defined with the other user errors; imported from here too


def check_choice(field_name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{field_name}={value!r} is not valid; choose one of: {', '.join(choices)}")


def check_range(field_name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{field_name}={value} must lie in [{low}, {high}]")


TOKENIZER_KINDS = ("wordpiece", "bpe", "unigram", "char", "word", "word_char")
BYTE_ALPHABET = 256  # byte-level kinds and unigram's byte fallback hold every byte as a symbol


@dataclass
class TokenizerConfig:
    """How the tokenizer is trained (group `tokenizer`), plus what `pretrainer tokenizer` shows."""

    name: str = "wordpiece"  # wordpiece | bpe | unigram | char | word | word_char (pretrainer/tokenization/kinds.py)
    vocab_size: int = 4096  # word, char: the K most frequent; subword kinds: the whole vocabulary
    lowercase: bool = True  # normalisation before training and encoding
    normalization: str = "nfc"  # unicode form: nfc | nfkc | none (wordpiece: BERT's own normaliser)
    min_frequency: int = 2  # a merge / piece / word must occur this often in the sample
    sample_documents: int = 50_000  # documents read (streamed) to train the tokenizer
    bpe_dropout: float = 0.0  # bpe: merges skipped with this probability when segmenting the pretraining corpus
    # Longer documents are cut (at whitespace) into pieces of at most this many characters, for
    # tokenizer training and when packing: memory stays bounded on a corpus with a huge line.
    max_document_chars: int = 100_000
    # `pretrainer tokenizer` only (not part of the trained tokenizer):
    show: str | None = None  # a sentence whose segmentation is printed
    diagnostic_documents: int = 2000  # held-out documents measured

    def __post_init__(self) -> None:
        check_choice("tokenizer.name", self.name, TOKENIZER_KINDS)
        check_choice("tokenizer.normalization", self.normalization, ("nfc", "nfkc", "none"))
        check_range("tokenizer.bpe_dropout", self.bpe_dropout, 0.0, 0.99)
        if self.bpe_dropout and self.name != "bpe":
            raise ConfigError(f"tokenizer.bpe_dropout applies to tokenizer=bpe, not tokenizer={self.name}")
        minimum = BYTE_ALPHABET + 5 if self.name in ("bpe", "word_char", "unigram") else 16
        if self.vocab_size < minimum:
            raise ConfigError(f"tokenizer.vocab_size={self.vocab_size} is below the alphabet of tokenizer={self.name}"
                              f" (at least {minimum} with the special tokens)")
        if self.sample_documents < 1 or self.diagnostic_documents < 1:
            raise ConfigError("tokenizer.sample_documents and tokenizer.diagnostic_documents must be at least 1")
        if self.max_document_chars < 1000:
            raise ConfigError(f"tokenizer.max_document_chars={self.max_document_chars} is too small (minimum 1000)")

    def training_fields(self) -> dict:
        """What the trained tokenizer depends on: the cache key (display options and the
        packing-time dropout are left out)."""
        return {key: getattr(self, key) for key in
                ("name", "vocab_size", "lowercase", "normalization", "min_frequency", "sample_documents",
                 "max_document_chars")}


ARCH_NAMES = ("encoder", "decoder", "encoder_decoder")
POSITIONS = ("learned", "sinusoidal", "rotary", "alibi", "alibi_directional", "t5_relative_bias")
OPTIMIZERS = ("adamw", "adafactor")


@dataclass
class ArchConfig:
    """Model family and shape (group `arch`, sizes from group `arch/size`)."""

    name: str = "encoder"  # encoder (BERT-like) | decoder (causal, GPT-like) | encoder_decoder (T5/BART-like)
    n_layer: int = 2  # encoder_decoder: layers of the encoder
    n_decoder_layer: int | None = None  # encoder_decoder: layers of the decoder (None: n_layer)
    d_model: int = 128
    n_head: int = 4
    d_ff: int = 512
    dropout: float = 0.0  # off by default: short budgets underfit, they do not overfit (measured)
    max_len: int = 128  # training length; learned positions cannot go beyond it, relative ones can
    norm_position: str = "pre"  # pre: x + f(norm(x)) ; post: norm(x + f(x)) as in BERT
    norm: str = "layernorm"  # layernorm | rmsnorm (T5, LLaMA) | none (pre only, with scaled_residual_init)
    norm_eps: float = 1e-5  # BERT uses 1e-12, GPT-2 1e-5, T5 1e-6
    # learned | sinusoidal (absolute) | rotary | alibi | alibi_directional | t5_relative_bias (relative)
    positions: str = "learned"
    relative_buckets: int = 32  # t5_relative_bias: buckets of relative distance ...
    relative_max_distance: int = 128  # ... logarithmic up to this distance
    # ... in a decoder, also for keys to the right (T5's prefix LM; objective=prefix_lm sets it: its prefix sees right)
    relative_bidirectional: bool = False
    activation: str = "gelu"  # gelu (exact) | relu | swiglu | geglu (gated, GELU tanh form as T5 v1.1)
    bias: bool = True  # biases in attention, feed-forward and LayerNorm (T5 and LLaMA have none)
    init_std: float = 0.02
    scaled_residual_init: bool = True  # GPT-2: residual-branch outputs init with std / sqrt(2 * layers)
    tie_embeddings: bool = True  # output projection shares the input embedding matrix
    segment_embeddings: bool = False  # token-type embeddings for sentence A / B (BERT); NSP/SOP set it

    def __post_init__(self) -> None:
        check_choice("arch.name", self.name, ARCH_NAMES)
        check_choice("arch.norm_position", self.norm_position, ("pre", "post"))
        check_choice("arch.norm", self.norm, ("layernorm", "rmsnorm", "none"))
        check_choice("arch.positions", self.positions, POSITIONS)
        check_choice("arch.activation", self.activation, ("gelu", "relu", "swiglu", "geglu"))
        check_range("arch.norm_eps", self.norm_eps, 0.0, 0.1)
        if self.norm == "none" and (self.norm_position != "pre" or not self.scaled_residual_init):
            raise ConfigError("arch.norm=none needs arch.norm_position=pre and arch.scaled_residual_init=true: "
                              "without norms only the scaled init keeps the residual stream from growing")
        check_range("arch.dropout", self.dropout, 0.0, 0.9)
        for key in ("n_layer", "d_model", "n_head", "d_ff", "max_len"):
            if getattr(self, key) < 1:
                raise ConfigError(f"arch.{key} must be positive, got {getattr(self, key)}")
        if self.d_model % self.n_head:
            raise ConfigError(f"arch.d_model={self.d_model} must be divisible by arch.n_head={self.n_head}")
        if self.positions == "rotary" and (self.d_model // self.n_head) % 2:
            raise ConfigError("arch.positions=rotary needs an even head size (arch.d_model / arch.n_head)")
        if self.n_decoder_layer is not None and self.n_decoder_layer < 1:
            raise ConfigError(f"arch.n_decoder_layer must be positive, got {self.n_decoder_layer}")


# Which architecture families each objective can train. Kept here (not in the objective
# modules) so that an incompatible pair fails before anything is imported or built. The
# first family is the objective's natural one, which `conf/objective/NAME.yaml` selects.
OBJECTIVE_ARCHS: dict[str, tuple[str, ...]] = {
    "mlm": ("encoder",),
    "wwm": ("encoder",),
    "span_mlm": ("encoder",),
    "mlm_nsp": ("encoder",),
    "mlm_sop": ("encoder",),
    "electra": ("encoder",),
    "clm": ("decoder",),
    "prefix_lm": ("decoder",),
    "t5_span": ("encoder_decoder",),
    "bart": ("encoder_decoder",),
}
# Objectives that read packed blocks as they are, so attention can be kept within each document.
# NSP/SOP pair segments (attending across the pair is the point); T5/BART rebuild the sequence.
DOCUMENT_MASK_OBJECTIVES = ("mlm", "wwm", "span_mlm", "electra", "clm", "prefix_lm")


@dataclass
class ObjectiveConfig:
    """Pretraining objective (group `objective`). Each objective reads the fields it names;
    one name per concept: `mask_prob` is the share of tokens corrupted by every objective."""

    name: str = "mlm"  # see OBJECTIVE_ARCHS and the README's table
    mask_prob: float = 0.15  # share of (non-special) tokens selected / corrupted
    mask_token_prob: float = 0.8  # of the selected: replaced by [MASK] (mlm, wwm, span_mlm, nsp/sop, electra)
    random_token_prob: float = 0.1  # of the selected: replaced by a random token; rest unchanged (bart: of the spans)
    span_geometric_p: float = 0.2  # span_mlm: span length in words ~ Geometric(p) ...
    max_span_length: int = 10  # span_mlm: ... clipped (truncated) at this many words
    mean_span_length: float = 3.0  # t5_span: mean noise span length; bart: Poisson lambda of span lengths
    permute_sentences: bool = True  # bart: shuffle the sentences of each document in the input
    whole_word_spans: bool = True  # bart: span lengths count whole words (fairseq's whole-word mask); false: tokens
    generator_fraction: float = 0.25  # electra: generator width / discriminator width
    discriminator_weight: float = 50.0  # electra: lambda in generator MLM + lambda * discriminator loss
    # Packed blocks hold several documents: attend only within a token's own document (true),
    # or across the [SEP] into its neighbours (false, GPT-2 / RoBERTa FULL-SENTENCES).
    # null: true for DOCUMENT_MASK_OBJECTIVES, false (not applicable) for the others.
    document_mask: bool | None = None

    def __post_init__(self) -> None:
        check_choice("objective.name", self.name, tuple(OBJECTIVE_ARCHS))
        check_range("objective.mask_prob", self.mask_prob, 0.0, 1.0)
        check_range("objective.mask_token_prob", self.mask_token_prob, 0.0, 1.0)
        check_range("objective.random_token_prob", self.random_token_prob, 0.0, 1.0)
        if self.name != "bart" and self.mask_token_prob + self.random_token_prob > 1.0 + 1e-9:  # bart: no "keep"
            raise ConfigError("objective.mask_token_prob + objective.random_token_prob must be <= 1")
        check_range("objective.span_geometric_p", self.span_geometric_p, 1e-3, 1.0)
        check_range("objective.mean_span_length", self.mean_span_length, 1.0, 100.0)
        check_range("objective.generator_fraction", self.generator_fraction, 0.01, 1.0)
        if self.max_span_length < 1:
            raise ConfigError(f"objective.max_span_length must be positive, got {self.max_span_length}")
        if self.discriminator_weight <= 0:
            raise ConfigError("objective.discriminator_weight must be positive")
        if self.document_mask and self.name not in DOCUMENT_MASK_OBJECTIVES:
            raise ConfigError(f"objective.document_mask=true does not apply to {self.name}; it applies to "
                              f"{', '.join(DOCUMENT_MASK_OBJECTIVES)}")

    @property
    def masks_documents(self) -> bool:
        """Whether attention stays within each packed document (the resolved `document_mask`)."""
        if self.document_mask is None:
            return self.name in DOCUMENT_MASK_OBJECTIVES
        return self.document_mask


@dataclass
class DataConfig:
    """Pretraining corpus (group `data`)."""

    source: str = "synthetic"  # synthetic | text_files | hub
    block_size: int = 128  # tokens per packed training block, [CLS] included
    eval_fraction: float = 0.02  # share of documents held out for the eval loss
    max_documents: int | None = None  # read at most this many documents (None: all)
    # Invalid UTF-8 in a text file: strict (an error naming the file and line) | replace (with U+FFFD)
    decode_errors: str = "strict"
    # Checking a packed-corpus cache entry when it is opened: sizes (file sizes and metadata) |
    # full (also the sha256 of every file) | auto (full for entries up to 1 GiB, sizes above).
    # An entry that fails is rebuilt, never used.
    verify_cache: str = "auto"
    num_proc: int | None = None  # processes packing the corpus (null: one per core); the packed bytes are the same
    # synthetic: the embedded benchmark's corpus
    seed: int = 0
    num_documents: int = 14_000
    # text_files: local .txt (one document per non-empty line) or .jsonl files
    paths: list[str] = field(default_factory=list)
    # hub (datasets.load_dataset) and the .jsonl field holding the text
    name: str | None = None  # dataset name on the hub, or a local dataset directory
    config: str | None = None
    split: str = "train"
    text_column: str = "text"
    revision: str | None = None
    streaming: bool = False  # hub: read the dataset as a stream, not downloaded and converted to Arrow first

    def __post_init__(self) -> None:
        check_choice("data.source", self.source, ("synthetic", "text_files", "hub"))
        check_choice("data.decode_errors", self.decode_errors, DECODE_ERRORS)
        check_choice("data.verify_cache", self.verify_cache, ("auto", "sizes", "full"))
        if self.max_documents is not None and self.max_documents < 1:
            raise ConfigError(f"data.max_documents must be positive or null, got {self.max_documents}")
        if self.num_proc is not None and self.num_proc < 1:
            raise ConfigError(f"data.num_proc must be positive or null (one per core), got {self.num_proc}")
        check_range("data.eval_fraction", self.eval_fraction, 0.0, 0.5)
        if self.block_size < 8:
            raise ConfigError(f"data.block_size={self.block_size} is too small (minimum 8)")
        check_data_source(self)


DECODE_ERRORS = ("strict", "replace")
# A task name becomes a directory of the run (predictions/<task>/): a name, never a path.
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

GLUE_TASKS = ("sst2", "cola", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


@dataclass
class FinetuneConfig:
    """Downstream tasks and the fine-tuning recipe (group `finetune`)."""

    source: str = "synthetic"  # synthetic (embedded benchmark) | glue (hub or a local copy) | files (CSV/TSV/JSONL)
    tasks: list[str] = field(default_factory=list)  # synthetic or GLUE task names; files: the task's name
    seed: int = 0  # task sample, head init and data order
    seeds: list[int] = field(default_factory=list)  # repeat each task with these seeds (mean ± std); empty: [seed]
    train_size: int | None = 200  # labeled training examples per task (the label budget; None: all)
    # synthetic: dev and test examples; glue: dev carved from train (test = official dev), null: each
    # task's own carve (finetune/glue.py: WNLI's 635 examples cannot spare MNLI's 1000)
    eval_size: int | None = 500
    epochs: int = 10
    patience: int | None = None  # stop after this many epochs without a better dev score (None: run all)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 64  # tokens per example after the template; longer ones are truncated
    mode: str = "full"  # full fine-tuning | linear_probe (body frozen) | aux_lm (GPT: + LM loss on the input)
    aux_lm_weight: float = 0.5  # aux_lm: weight of the language-modelling loss
    pooling: str = "mean"  # mean | first ([CLS]); decoder bodies always read the last token; decoder: BART-style
    dropout: float = 0.1  # before the classification head
    scratch_baseline: bool = True  # also fine-tune a randomly initialised body
    reuse_scratch: bool = True  # a scratch run already computed (same task, recipe, arch, seed, code) is reused
    save_predictions: bool = True  # dev/test predictions to <run dir>/predictions/
    # glue: datasets.load_dataset(hub_name, task) -- a hub name, or a local directory laid out the same way
    hub_name: str = "nyu-mll/glue"
    # files: local CSV / TSV / JSONL, one file per split, columns mapped to text_a / text_b / label
    task_type: str = "classification"  # classification | regression | tagging (files)
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    text_a_column: str = "text_a"
    text_b_column: str | None = None  # set for sentence pairs
    label_column: str = "label"
    columns: ColumnMaps = field(default_factory=ColumnMaps)  # files: a split's own names override the three above
    label_names: list[str] = field(default_factory=list)  # files: the label set (empty: sorted labels of train)
    decode_errors: str = "strict"  # files: invalid UTF-8 is an error naming file and line (strict) | replace

    def __post_init__(self) -> None:
        check_choice("finetune.source", self.source, ("synthetic", "glue", "files"))
        check_choice("finetune.pooling", self.pooling, ("mean", "first", "decoder"))
        check_choice("finetune.mode", self.mode, ("full", "linear_probe", "aux_lm"))
        check_choice("finetune.task_type", self.task_type, ("classification", "regression", "tagging"))
        check_choice("finetune.decode_errors", self.decode_errors, DECODE_ERRORS)
        for task in self.tasks:
            if not TASK_NAME.fullmatch(str(task)):
                raise ConfigError(f"finetune.tasks: {task!r} is not a task name (letters, digits, '_', '.', '-'; "
                                  "it names a directory of the run, so never a path)")
        if self.source == "synthetic":
            from pretrainer.data.synthetic import TASK_NAMES  # light: the generator has no heavy imports

            for task in self.tasks:
                check_choice("finetune.tasks", task, tuple(TASK_NAMES))
        if self.source == "glue":
            for task in self.tasks:
                check_choice("finetune.tasks", task, GLUE_TASKS)
        check_task_source(self)
        self._check_pairs_in_every_split()
        for key in ("eval_size", "epochs", "batch_size", "max_length"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"finetune.{key} must be positive, got {getattr(self, key)}")
        if self.train_size is not None and self.train_size < 1:
            raise ConfigError(f"finetune.train_size must be positive or null, got {self.train_size}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"finetune.patience must be positive or null, got {self.patience}")
        check_range("finetune.aux_lm_weight", self.aux_lm_weight, 0.0, 100.0)

    def split_columns(self, split: str) -> SplitColumns:
        """The column names of one split's file (train, dev or test), its own map first."""
        own = getattr(self.columns, split)
        return SplitColumns(own.text_a or self.text_a_column, own.text_b or self.text_b_column,
                            own.label or self.label_column)

    def _check_pairs_in_every_split(self) -> None:
        """A pair task reads a second text from every split; a single-text task from none."""
        pairs = {split: self.split_columns(split).text_b is not None for split in ("train", "dev", "test")}
        if len(set(pairs.values())) > 1:
            odd = next(split for split, is_pair in pairs.items() if is_pair != pairs["train"])
            raise ConfigError(f"finetune.columns.{odd}.text_b: train {'has' if pairs['train'] else 'has no'} "
                              f"second text but {odd} {'has' if pairs[odd] else 'has none'}; set "
                              "finetune.text_b_column for every split, or a text_b in each split's map")

    def run_seeds(self) -> list[int]:
        return list(self.seeds) or [self.seed]


@dataclass
class TrainerConfig:
    """Pretraining loop (group `trainer`)."""

    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the training step's forward (worth it on GPU; its time is in the summary)
    compile_backend: str = "inductor"  # inductor | aot_eager | eager (the last two: for debugging graph breaks)
    data_workers: int = 0  # processes collating micro-batches ahead of the step (0: in the training process)
    parallel: str = "ddp"  # with several processes (torchrun, SLURM): ddp | fsdp (FSDP2: params, grads, state sharded)
    # Attention kernel: auto (FlexAttention on CUDA where a document/prefix/padding mask or a position
    # bias would keep SDPA off its fused kernels; SDPA otherwise) | sdpa | flex
    attention: str = "auto"
    num_threads: int | None = None  # CPU threads for torch (None: torch's default)
    seed: int = 0
    batch_size: int = 16  # blocks per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step, per process (a step: batch_size x grad_accum x processes)
    max_steps: int | None = 1200  # budget in optimizer steps ...
    max_tokens: int | None = None  # ... or in tokens (wins over steps) ...
    max_flops: float | None = None  # ... or in training FLOPs, as `pretrainer plan` counts them (wins over both)
    optimizer: str = "adamw"  # adamw | adafactor (T5's; `lr` is its relative step): set by group trainer/optimizer
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # the schedule decays to lr * min_lr_ratio
    warmup_steps: int | None = None  # null: warmup_ratio of the run's optimizer steps
    warmup_ratio: float = 0.0833  # 1/12: 100 of the demo's 1200 steps, and as much of a shortened run
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    weight_decay: float = 0.01  # not applied to norms, biases, embeddings
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0  # max global gradient norm (0 disables)
    eval_every: int | None = None  # steps between eval-loss measurements; null: evals_per_run spread over the run
    evals_per_run: int = 4  # with eval_every null: every total // 4 steps (300 of the demo's 1200)
    eval_batches: int = 8  # batches of held-out blocks per eval
    log_every: int = 10  # steps between metrics.jsonl lines
    checkpoint_every: int = 100  # steps between checkpoints (0: only at the end and on SIGINT/SIGTERM)
    keep_checkpoints: int = 2  # the newest checkpoints kept; resume falls back to an older one if the newest is bad
    # A non-finite loss or gradient norm: fail (stop, save the last good state, exit code 3) |
    # skip (drop the step: weights, optimizer moments and lr unchanged; fail after max_skips in a row)
    nonfinite: str = "fail"
    max_skips: int = 5

    def warmup_for(self, total_steps: int) -> int:
        """Warm-up steps of a run of `total_steps`: the given number, or warmup_ratio of the run."""
        return self.warmup_steps if self.warmup_steps is not None else round(self.warmup_ratio * total_steps)

    def eval_interval(self, total_steps: int) -> int:
        """Steps between evaluations: the given number, or the run split into evals_per_run."""
        return self.eval_every if self.eval_every is not None else max(1, total_steps // self.evals_per_run)

    @property
    def budget_kind(self) -> str:
        """Which budget field rules: flops, tokens or steps (compute-matched comparisons use flops)."""
        return "flops" if self.max_flops is not None else "tokens" if self.max_tokens is not None else "steps"

    def __post_init__(self) -> None:
        check_choice("trainer.precision", self.precision, ("auto", "fp32", "bf16"))
        check_choice("trainer.schedule", self.schedule, ("cosine", "linear", "constant"))
        check_choice("trainer.nonfinite", self.nonfinite, ("fail", "skip"))
        check_choice("trainer.compile_backend", self.compile_backend, ("inductor", "aot_eager", "eager"))
        check_choice("trainer.attention", self.attention, ("auto", "sdpa", "flex"))
        check_choice("trainer.parallel", self.parallel, ("ddp", "fsdp"))
        check_choice("trainer.optimizer", self.optimizer, OPTIMIZERS)
        if self.optimizer == "adafactor" and self.parallel == "fsdp":
            raise ConfigError("trainer.optimizer=adafactor does not run under trainer.parallel=fsdp (torch's Adafactor "
                              "updates moments in place; FSDP2's sharded tensors refuse it): use trainer.parallel=ddp")
        if self.data_workers < 0:
            raise ConfigError(f"trainer.data_workers must be >= 0, got {self.data_workers}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(f"trainer.device={self.device!r} is not valid; choose auto, cpu, cuda, cuda:N or mps")
        if self.max_steps is None and self.max_tokens is None and self.max_flops is None:
            raise ConfigError("set a pretraining budget: trainer.max_steps, trainer.max_tokens or trainer.max_flops")
        for key in ("batch_size", "grad_accum", "eval_every", "evals_per_run", "eval_batches", "log_every",
                    "keep_checkpoints", "max_skips"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"trainer.{key} must be positive, got {getattr(self, key)}")
        for key in ("max_steps", "max_tokens", "max_flops"):
            value = getattr(self, key)
            if value is not None and not (value >= 1 and math.isfinite(value)):
                raise ConfigError(f"trainer.{key} must be positive (or null), got {value}")
        for key in ("warmup_steps", "checkpoint_every", "grad_clip", "weight_decay"):
            value = getattr(self, key)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"trainer.{key} must be >= 0, got {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"trainer.lr must be positive, got {self.lr}")
        check_range("trainer.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_range("trainer.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        check_range("trainer.beta1", self.beta1, 0.0, 0.999999)
        check_range("trainer.beta2", self.beta2, 0.0, 0.999999)


@dataclass
class LoggerConfig:
    """Where metrics go besides the run dir's files (group `logger`)."""

    name: str = "none"  # none (local files only) | wandb
    project: str = "pretrainer"
    entity: str | None = None
    mode: str = "offline"  # offline (sync later with `wandb sync`) | online | disabled
    group: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("logger.name", self.name, ("none", "wandb"))
        check_choice("logger.mode", self.mode, ("offline", "online", "disabled"))


@dataclass
class Config:
    """A whole experiment: one field per config group plus run-wide settings."""

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    zero_shot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    seed: int = 0  # the run's seed: trainer.seed and finetune.seed follow it unless set themselves
    cache_dir: str = "~/.cache/pretrainer"  # tokenizer and tokenized-corpus caches
    run_name: str | None = None  # shown in logs and wandb; default: the run's overrides
    resume: bool = False  # continue from the newest good checkpoint in <run dir>/checkpoints/ when there is one
    # Config keys (or groups: `trainer` covers trainer.*) that may differ from the checkpoint's
    # on resume; any other change that alters results is refused. Recorded in manifest.json.
    resume_allow_changes: list[str] = field(default_factory=list)
    init: str | None = None  # `pretrainer finetune` / `evaluate`: a run dir, checkpoint or HF dir to start from

    def __post_init__(self) -> None:
        check_cross_group(self)
        valid = field_paths(self)
        for key in self.resume_allow_changes:
            if key not in valid:
                raise ConfigError(f"resume_allow_changes: {key!r} is not a config key or group; e.g. trainer.lr, "
                                  f"trainer.max_steps or trainer (groups: {', '.join(f.name for f in fields(self))})")


def check_cross_group(cfg: Config) -> None:
    """Checks that involve more than one group; raised before any work starts."""
    compatible = OBJECTIVE_ARCHS[cfg.objective.name]
    if cfg.arch.name not in compatible:
        raise ConfigError(
            f"objective={cfg.objective.name} cannot train arch={cfg.arch.name}; "
            f"compatible architectures: {', '.join(compatible)}"
        )
    if cfg.arch.relative_bidirectional and cfg.arch.name != "decoder":  # encoder: always; T5's decoder: never
        raise ConfigError(f"arch.relative_bidirectional applies to arch=decoder, not arch={cfg.arch.name}")
    if cfg.arch.segment_embeddings and cfg.arch.name == "encoder_decoder":
        raise ConfigError("arch.segment_embeddings applies to arch=encoder or arch=decoder, not encoder_decoder")
    if cfg.objective.name in ("mlm_nsp", "mlm_sop") and not cfg.arch.segment_embeddings:
        raise ConfigError(f"objective={cfg.objective.name} needs arch.segment_embeddings=true "
                          "(sentence A / B token types)")
    if cfg.data.block_size > cfg.arch.max_len:
        raise ConfigError(
            f"data.block_size={cfg.data.block_size} exceeds arch.max_len={cfg.arch.max_len}"
        )
    if cfg.init is None:  # with init, the body is the checkpoint's: checked when it is read
        check_finetune_body(cfg.finetune, cfg.arch)
