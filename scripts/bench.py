"""Training throughput side by side: pretrainer's optimizer step vs Hugging Face transformers.

    python3 scripts/bench.py [--device auto|cpu|cuda] [--workloads gpt2,bert,t5] [--sizes tiny,mini]
                             [--compile off|on|both] [--warmup N] [--steps N] [--threads N]
                             [--peak-tflops F] [--vocab N|hf] [--document-mask] [--data-workers N]
                             [--attention auto|sdpa|flex] [--json PATH]

Three workloads, each ours vs the HF model of the same shape, in one process:
    gpt2  our decoder + objective clm         vs GPT2LMHeadModel
    bert  our encoder + objective mlm         vs BertForMaskedLM
    t5    our encoder_decoder + t5_span       vs T5ForConditionalGeneration (T5 v1.0: ReLU FFN, tied)
The architecture switches are set to the HF model's (see WORKLOADS); widths, layers, heads,
d_ff, vocabulary, lengths and batch are identical, and the non-embedding parameter counts
of both sides are printed next to each other (they match exactly).

Our side runs the real training step, `_optimizer_step` of pretrainer/training/loop.py
(collation, host-to-device copy, forward, backward, clip, finite check, AdamW from
`build_adamw`), on a BlockSet of random token blocks; HF's step is forward + backward +
`clip_grad_norm_(1.0)` + AdamW step + zero_grad on inputs already on the device. bf16
autocast on CUDA, fp32 on CPU, for both. Warm-up steps are not timed; every timed step is
timed on its own (device synchronized) and tok/s comes from the median step, which discounts
steps slowed by other processes on a shared machine. In compile mode the warm-up's excess over
as many median steps is reported as compile seconds.

Shapes: sizes base and large use the HF models' pretraining shapes and vocabularies
(GPT-2 16 x 1024, vocab 50257 padded to 50304; BERT 256 x 128, vocab 30522; T5 64 x 512
-> 114 targets, vocab 32128); the CPU sizes (tiny, mini, small) use 16 x 128 (T5: 128 ->
29 targets) and pretrainer's default vocabulary of 4096, the shape the CPU demo trains.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a checkout without `make install`

from pretrainer.config import ArchConfig, ObjectiveConfig, TrainerConfig
from pretrainer.data.blocks import BlockSet
from pretrainer.interop import bert, gpt2, t5
from pretrainer.models import build_body
from pretrainer.objectives import build_objective, objective_class
from pretrainer.objectives.t5_span import corrupted_lengths, noise_counts, raw_length_for_input
from pretrainer.plan import parameter_counts, random_text_blocks
from pretrainer.tokenization import SPECIAL_TOKENS, SpecialIds
from pretrainer.training.batches import BatchStream, MicroBatches
from pretrainer.training.device import autocast, use_bf16
from pretrainer.training.loop import PretrainingModel, Runtime, _optimizer_step, compiled
from pretrainer.training.optim import build_adamw

SIZE_DIR = Path(__file__).resolve().parent.parent / "conf" / "arch" / "size"
SHAPE_KEYS = ("n_layer", "d_model", "n_head", "d_ff", "max_len")  # what a size preset sets; the rest is the workload's
HF_SHAPED_SIZES = ("base", "large")  # sizes benchmarked at the HF models' own pretraining shapes
CPU_BATCH, CPU_BLOCK, CPU_VOCAB = 16, 128, 4096  # the other sizes: pretrainer's CPU demo shape and vocabulary
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP = 1e-4, (0.9, 0.98), 0.01, 1.0  # the same for both sides
H100_BF16_DENSE_TFLOPS = 989.0  # H100/H200 SXM bf16 dense peak
MASK_PROB, MEAN_SPAN = 0.15, 3.0  # MLM masking rate and T5 noise density / mean span (ObjectiveConfig defaults)
MFU_FORMULA = ("MFU = tokens/s x (6N + 12·L·d·T) / peak FLOP/s; N = non-embedding parameters (vocabulary "
               "projection and embeddings not counted), L layers, d width, T input length. T5, per input token: "
               "6·(N_enc + N_dec·S/T) + 12·L·d·T + 12·L_dec·d·(S+T)·S/T (the decoder runs S/T tokens per input "
               "token, each attending S targets and T inputs); N_enc / N_dec = non-embedding parameters of each "
               "stack, the relative-bias tables included.")


@dataclass(frozen=True)
class Workload:
    """One HF model and the pretrainer arch + objective that do the same work."""

    objective: str
    hf_class: str  # a transformers class name
    interop: object  # pretrainer.interop.{gpt2,bert,t5}: our ArchConfig -> its HF config
    hf_vocab: int
    hf_batch: int  # the HF model's own pretraining shape (sizes base, large)
    hf_block: int
    switches: dict  # ArchConfig fields that make our model the HF one
    notes: tuple[str, ...]


WORKLOADS = {
    "gpt2": Workload(
        "clm", "GPT2LMHeadModel", gpt2, 50304, 16, 1024,
        {"name": "decoder", "norm_position": "pre", "norm": "layernorm", "norm_eps": 1e-5, "positions": "learned",
         "activation": "gelu", "bias": True, "tie_embeddings": True, "segment_embeddings": False},
        ("gpt2: pre-LN, learned positions, exact GELU on both (HF activation_function='gelu'; OpenAI's GPT-2 uses "
         "gelu_new, the tanh form), biases, tied embeddings, vocab 50257 padded to 50304 at base/large",
         "gpt2: ours projects T-1 positions to the vocabulary, HF all T")),
    "bert": Workload(
        "mlm", "BertForMaskedLM", bert, 30522, 256, 128,
        {"name": "encoder", "norm_position": "post", "norm": "layernorm", "norm_eps": 1e-12, "positions": "learned",
         "activation": "gelu", "bias": True, "tie_embeddings": True, "segment_embeddings": True},
        ("bert: post-LN, learned positions + 2 segment embeddings, exact GELU, biases, MLM head transform, tied",
         "bert: ours projects only the ~15% selected positions to the vocabulary (80/10/10 corruption), "
         "HF all T positions with labels -100 elsewhere ([MASK] at every selected position)")),
    "t5": Workload(
        "t5_span", "T5ForConditionalGeneration", t5, 32128, 64, 512,
        {"name": "encoder_decoder", "norm_position": "pre", "norm": "rmsnorm", "norm_eps": 1e-6,
         "positions": "t5_relative_bias", "relative_buckets": 32, "relative_max_distance": 128,
         "activation": "relu", "bias": False, "tie_embeddings": True, "segment_embeddings": False},
        ("t5: T5 v1.0 (ReLU FFN, tied embeddings; HF scales the decoder output by d^-0.5), pre-LN RMSNorm, "
         "relative bias shared per stack, no biases; ours scales scores by 1/sqrt(D), HF folds it into the init",
         "t5: tok/s counts encoder input tokens; the S target tokens are extra work, counted in the MFU FLOPs")),
}
COMMON_NOTES = (
    "ours: each timed step includes collation, the host-to-device copy and one host sync (the finite check); "
    "HF: inputs pre-built on the device (collation ms shows what ours spends building a micro-batch)",
    "both: dropout 0, AdamW lr 1e-4 betas (0.9, 0.98) wd 0.01 (ours: decay on Linear weights only; HF: on all), "
    "fused AdamW on CUDA, clip 1.0, bf16 autocast on CUDA / fp32 on CPU, HF attn_implementation=sdpa",
    "tiny/mini/small presets: tie_embeddings=true for both sides (tiny's preset unties them) to match HF",
)


@dataclass(frozen=True)
class Shape:
    """One benchmarked configuration; both sides get exactly these dimensions."""

    workload: str
    size: str
    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    max_len: int  # learned positions' table length (embedding parameters only)
    batch: int
    block: int  # model input length T (T5: the encoder's input)
    vocab: int  # total vocabulary, T5's sentinels included (they are its last ids)

    @property
    def raw_length(self) -> int:
        """Tokens a T5 span-corruption input of `block` tokens is made from."""
        return raw_length_for_input(self.block, MASK_PROB, MEAN_SPAN)

    @property
    def target(self) -> int:
        """T5: target length S from our t5_span objective (128 -> 29, 512 -> 114); 0 otherwise."""
        return corrupted_lengths(self.raw_length, MASK_PROB, MEAN_SPAN)[1] if self.workload == "t5" else 0

    @property
    def label(self) -> str:
        base = f"{self.size} {self.batch}x{self.block}"
        return f"{base}->{self.target}" if self.target else base

    def special(self) -> SpecialIds:
        """Ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK]; 5 stands for '.'; T5's sentinels are the last ids."""
        spans = noise_counts(self.raw_length, MASK_PROB, MEAN_SPAN)[1] if self.workload == "t5" else 0
        return SpecialIds(*range(len(SPECIAL_TOKENS)), count=len(SPECIAL_TOKENS),
                          sentinels=tuple(range(self.vocab - spans, self.vocab)), sentence_ends=(len(SPECIAL_TOKENS),))


def size_preset(size: str) -> dict:
    """The shape fields of conf/arch/size/<size>.yaml (its other fields, e.g. tiny's untied head, are not used)."""
    path = SIZE_DIR / f"{size}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SIZE_DIR.glob("*.yaml")))
        raise SystemExit(f"unknown size {size!r}; choose from {known}")
    raw = OmegaConf.to_container(OmegaConf.load(path))
    return {key: raw[key] for key in SHAPE_KEYS}


def make_shape(workload: str, size: str, vocab: int | None = None) -> Shape:
    """`size`'s preset at the HF model's own shape (base, large) or the CPU demo's; `vocab` None: the
    HF model's at base/large, 4096 otherwise."""
    spec, dims = WORKLOADS[workload], size_preset(size)
    hf_shaped = size in HF_SHAPED_SIZES
    batch, block = (spec.hf_batch, spec.hf_block) if hf_shaped else (CPU_BATCH, CPU_BLOCK)
    default_vocab = spec.hf_vocab if hf_shaped else CPU_VOCAB
    max_len = block if workload == "gpt2" and hf_shaped else max(dims["max_len"], block)  # GPT-2: 1024 positions
    return Shape(workload, size, dims["n_layer"], dims["d_model"], dims["n_head"], dims["d_ff"], max_len, batch,
                 block, vocab or default_vocab)


def arch_config(shape: Shape) -> ArchConfig:
    return ArchConfig(**WORKLOADS[shape.workload].switches, n_layer=shape.n_layer, d_model=shape.d_model,
                      n_head=shape.n_head, d_ff=shape.d_ff, max_len=shape.max_len, dropout=0.0)


# ---- our side ----------------------------------------------------------------------------------------------------


def our_model(shape: Shape, document_mask: bool) -> PretrainingModel:
    """Body + objective as the pipeline builds them, for a tokenizer of `shape.vocab` ids."""
    cfg = ObjectiveConfig(name=WORKLOADS[shape.workload].objective, mask_prob=MASK_PROB, mean_span_length=MEAN_SPAN,
                          document_mask=document_mask if shape.workload != "t5" else None)
    body = build_body(arch_config(shape), shape.vocab)
    return PretrainingModel(body, build_objective(cfg, body, shape.special(), shape.vocab))


def random_blocks(shape: Shape, model: PretrainingModel, num_blocks: int) -> BlockSet:
    """Random text-like packed blocks (word starts, sentence and document ends) for this
    shape's objective, the ones `pretrainer plan plan.measure_steps` times the step on."""
    raw = objective_class(model.objective.cfg).raw_block_size(model.objective.cfg, shape.block)
    return random_text_blocks(raw, num_blocks, model.objective.special, shape.vocab)


@contextlib.contextmanager
def our_training_steps(model: PretrainingModel, blocks: BlockSet, batch_size: int, device: torch.device,
                       use_compile: bool, total_steps: int, data_workers: int,
                       attention: str) -> Iterator[Callable[[int], object]]:
    """step -> loss (a device tensor) of one optimizer step, exactly as `pretrain` runs it: the same
    compiled forward, micro-batch stream and `_optimizer_step`. The one place that calls into the
    training loop: adapt here when its signatures change. Steps must be called 0, 1, ... in order."""
    cfg = TrainerConfig(batch_size=batch_size, grad_accum=1, seed=0, lr=LR, weight_decay=WEIGHT_DECAY,
                        beta1=BETAS[0], beta2=BETAS[1], grad_clip=GRAD_CLIP, compile=use_compile,
                        data_workers=data_workers, attention=attention)
    runtime = Runtime(device=device, bf16=use_bf16("auto", device), checkpoint_dir=Path(tempfile.gettempdir()),
                      checkpoint_extras={})  # nothing is saved: the step reads device and bf16 only
    optimizer = build_adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    forward_model = compiled(model, cfg)  # pretrain's: attention kernel, then torch.compile (static slots) or eager
    model.train()
    batches = MicroBatches(model.objective.collate, blocks, cfg.batch_size, cfg.grad_accum, cfg.seed)
    with BatchStream(batches, 0, total_steps, runtime.device, cfg.data_workers) as stream:
        yield lambda step: _optimizer_step(forward_model, model, stream, cfg, runtime, optimizer, step).loss


def collation_ms(model: PretrainingModel, blocks: BlockSet, batch_size: int, repeats: int) -> float:
    """Mean ms to build one micro-batch (gather + `objective.collate`), as the batch stream builds them."""
    batches = MicroBatches(model.objective.collate, blocks, batch_size, grad_accum=1, seed=0)
    start = time.perf_counter()
    for index in range(repeats):
        batches[index]
    return (time.perf_counter() - start) / repeats * 1e3


def our_parameters(model: PretrainingModel) -> tuple[int, int]:
    """(non-embedding parameters, of them the decoder stack's), counted as `pretrainer plan` does."""
    counts = parameter_counts(model.body, model.objective)
    return counts["non_embedding_params"], counts["decoder_params"]


# ---- HF side -----------------------------------------------------------------------------------------------------


def hf_model(shape: Shape) -> nn.Module:
    """The HF model from the config our interop exports for this arch (no download), SDPA attention."""
    import transformers

    spec = WORKLOADS[shape.workload]
    options = spec.interop.hf_config(arch_config(shape), shape.vocab, shape.special())
    config = transformers.AutoConfig.for_model(options.pop("model_type"), **options, attn_implementation="sdpa")
    return getattr(transformers, spec.hf_class)(config)


def hf_parameters(model: nn.Module) -> tuple[int, int]:
    """(non-embedding parameters, of them the decoder stack's): unique parameters less every
    nn.Embedding's weight except T5's relative-bias tables (per-layer attention parameters, as
    `parameter_counts` treats ours). Tied output matrices are the embedding, counted once."""
    relative = {id(m.weight) for name, m in model.named_modules() if name.endswith("relative_attention_bias")}
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} - relative
    unique = {id(p): (name, p) for name, p in model.named_parameters()}
    kept = [(name, p) for key, (name, p) in unique.items() if key not in embeddings]
    return sum(p.numel() for _, p in kept), sum(p.numel() for name, p in kept if name.startswith("decoder."))


def hf_batches(shape: Shape, device: torch.device, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`count` random batches on the device: GPT-2 ids (B, T) with labels = ids (HF shifts them);
    BERT 15% of positions [MASK] with labels there, -100 elsewhere; T5 ids (B, T), labels (B, S)."""
    special, generator = shape.special(), torch.Generator().manual_seed(seed)
    low, high = special.count + 1, shape.vocab - len(special.sentinels)
    batches = []
    for _ in range(count):
        ids = torch.randint(low, high, (shape.batch, shape.block), generator=generator)
        if shape.workload == "gpt2":
            batch = {"input_ids": ids, "labels": ids}
        elif shape.workload == "bert":
            selected = torch.rand(ids.shape, generator=generator) < MASK_PROB
            batch = {"input_ids": ids.masked_fill(selected, special.mask), "labels": ids.masked_fill(~selected, -100)}
        else:
            batch = {"input_ids": ids, "labels": torch.randint(low, high, (shape.batch, shape.target),
                                                               generator=generator)}
        batches.append({key: value.to(device) for key, value in batch.items()})
    return batches


@contextlib.contextmanager
def hf_training_steps(model: nn.Module, shape: Shape, device: torch.device,
                      use_compile: bool) -> Iterator[Callable[[int], torch.Tensor]]:
    """step -> loss (on the device, no sync) of forward + backward + clip + AdamW step + zero_grad."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY,
                                  fused=device.type == "cuda" or None)
    batches, bf16 = hf_batches(shape, device, count=4), use_bf16("auto", device)
    forward_model = torch.compile(model) if use_compile else model
    model.train()

    def step(index: int) -> torch.Tensor:
        with autocast(device, bf16):
            loss = forward_model(**batches[index % len(batches)]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    yield step


# ---- timing ------------------------------------------------------------------------------------------------------


@dataclass
class SideResult:
    tokens_per_s: float  # input tokens per median step time
    step_s: float  # median seconds per timed optimizer step
    step_s_mean: float
    step_s_min: float
    step_s_max: float
    compile_s: float | None  # compile mode: warm-up time beyond `warmup` median steps
    peak_mem_mib: float  # CUDA: this side's max_memory_allocated; CPU: the process's peak RSS so far
    non_embedding_params: int
    decoder_params: int
    last_loss: float


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run_step: Callable[[int], object], warmup: int, steps: int,
               device: torch.device) -> tuple[list[float], list[float], object]:
    """(seconds of each warm-up step, of each timed step, the last step's output). Each step is
    timed on its own, device synchronized, so that a median can discount steps slowed by other
    processes (our step syncs once anyway; for HF's the sync costs a launch gap per step)."""
    warmup_s, timed_s, output = [], [], None
    synchronize(device)
    for step in range(warmup + steps):
        start = time.perf_counter()
        output = run_step(step)
        synchronize(device)
        (warmup_s if step < warmup else timed_s).append(time.perf_counter() - start)
    return warmup_s, timed_s, output


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux reports KiB


def fresh_start(device: torch.device, use_compile: bool) -> None:
    """Free the previous side's model and compiled graphs, so memory and recompile limits start clean."""
    gc.collect()
    if use_compile:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)


def measure_side(steps_context, parameters: tuple[int, int], shape: Shape, device: torch.device,
                 use_compile: bool, warmup: int, steps: int) -> SideResult:
    """Time one side: `steps_context` yields its step function; `parameters` (non-embedding, decoder's);
    tokens are the model's input tokens."""
    with steps_context as run_step:
        warmup_s, timed_s, last = time_steps(run_step, warmup, steps, device)
    non_embedding, decoder = parameters
    step_s = statistics.median(timed_s)
    compile_s = max(sum(warmup_s) - warmup * step_s, 0.0) if use_compile else None
    return SideResult(shape.batch * shape.block / step_s, step_s, statistics.fmean(timed_s), min(timed_s),
                      max(timed_s), compile_s, peak_memory_mib(device), non_embedding, decoder, float(last))


# ---- one row -----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    shape: str
    mode: str
    device: str
    threads: int
    hf: SideResult
    ours: SideResult
    ratio: float  # ours tok/s / HF tok/s
    flops_per_token_ours: float
    flops_per_token_hf: float
    mfu_ours: float | None
    mfu_hf: float | None
    collation_ms: float
    dims: dict = field(default_factory=dict)


def training_flops_per_token(shape: Shape, non_embedding: int, decoder: int) -> float:
    """6N + 12·L·d·T per input token; T5: the decoder's parameters and attention at S/T per input token."""
    L, d, T, S = shape.n_layer, shape.d_model, shape.block, shape.target
    if not S:
        return 6 * non_embedding + 12 * L * d * T
    encoder = non_embedding - decoder
    return 6 * (encoder + decoder * S / T) + 12 * L * d * T + 12 * L * d * (S + T) * S / T


def mfu(tokens_per_s: float, flops_per_token: float, peak_tflops: float | None) -> float | None:
    return None if not peak_tflops else tokens_per_s * flops_per_token / (peak_tflops * 1e12)


@dataclass(frozen=True)
class Settings:
    """How every row is measured."""

    device: torch.device
    warmup: int  # untimed steps per side (compile mode: they hold the compilation)
    steps: int  # timed steps per side
    peak_tflops: float | None  # for MFU; None: no MFU
    document_mask: bool = False  # ours attends within each packed document (HF cannot)
    data_workers: int = 0  # ours: trainer.data_workers, processes collating ahead of the step
    attention: str = "auto"  # ours: trainer.attention (auto: FlexAttention on CUDA where a mask or bias stops SDPA)


def bench_row(shape: Shape, use_compile: bool, settings: Settings) -> Row:
    """Ours, then HF, at `shape`; each on a freshly built model (seed 0) with its own warm-up."""
    device, warmup, steps = settings.device, settings.warmup, settings.steps
    fresh_start(device, use_compile)
    model = our_model(shape, settings.document_mask).to(device)
    blocks = random_blocks(shape, model, num_blocks=4 * shape.batch)  # a few batches; epochs reshuffle as in training
    training = our_training_steps(model, blocks, shape.batch, device, use_compile, warmup + steps,
                                  settings.data_workers, settings.attention)
    ours = measure_side(training, our_parameters(model), shape, device, use_compile, warmup, steps)
    collate = collation_ms(model, blocks, shape.batch, repeats=max(steps, 3))
    del model, training
    fresh_start(device, use_compile)
    reference = hf_model(shape).to(device)
    hf = measure_side(hf_training_steps(reference, shape, device, use_compile), hf_parameters(reference), shape,
                      device, use_compile, warmup, steps)
    del reference
    fresh_start(device, use_compile)
    flops_ours = training_flops_per_token(shape, ours.non_embedding_params, ours.decoder_params)
    flops_hf = training_flops_per_token(shape, hf.non_embedding_params, hf.decoder_params)
    return Row(shape.workload, shape.label, "compile" if use_compile else "eager", device.type,
               torch.get_num_threads(), hf, ours, ours.tokens_per_s / hf.tokens_per_s, flops_ours, flops_hf,
               mfu(ours.tokens_per_s, flops_ours, settings.peak_tflops),
               mfu(hf.tokens_per_s, flops_hf, settings.peak_tflops), collate,
               {key: value for key, value in asdict(shape).items() if key not in ("workload", "size")}
               | {"target": shape.target})


def run_benchmark(shapes: list[Shape], modes: list[bool], settings: Settings,
                  progress: Callable[[Row], None] = lambda row: None) -> list[Row]:
    """One row per shape and mode (False: eager, True: torch.compile)."""
    rows = []
    for shape in shapes:
        for use_compile in modes:
            rows.append(bench_row(shape, use_compile, settings))
            progress(rows[-1])
    return rows


# ---- output ------------------------------------------------------------------------------------------------------


def notes(rows: list[Row], settings: Settings) -> list[str]:
    cuda = settings.device.type == "cuda"
    memory = ("peak mem: torch.cuda.max_memory_allocated per side" if cuda else
              "peak mem: the process's peak RSS (ru_maxrss) after each side, a high-water mark over all rows so far")
    lines = [MFU_FORMULA,
             f"peak: {settings.peak_tflops:g} TFLOP/s" if settings.peak_tflops else "MFU: — (no --peak-tflops given)",
             "tok/s: input tokens / the median of the timed steps' seconds, each step timed on its own "
             "(device synchronized); mean, min and max step times are in the JSON",
             memory, "compile s: warm-up time beyond as many median steps (compile mode only)",
             "collation ms: building one of our micro-batches (gather + objective.collate), timed on its own; "
             + ("inside ours tok/s" if settings.data_workers == 0 else
                f"off the critical path with {settings.data_workers} data workers"),
             f"ours: document_mask {'on' if settings.document_mask else 'off'} (HF has no per-document attention), "
             f"data_workers {settings.data_workers}, attention {settings.attention} (HF: sdpa)"]
    for row in rows:
        parity = "equal" if row.ours.non_embedding_params == row.hf.non_embedding_params else "DIFFERENT"
        lines.append(f"params {row.workload} {row.shape}: non-embedding ours {row.ours.non_embedding_params:,} / "
                     f"HF {row.hf.non_embedding_params:,} ({parity})")
    workloads = dict.fromkeys(row.workload for row in rows)
    lines += [note for name in workloads for note in WORKLOADS[name].notes]
    return lines + list(COMMON_NOTES)


def _pair(ours: float | None, hf: float | None, digits: int) -> str:
    if ours is None or hf is None:
        return "—"
    return f"{ours:,.{digits}f} / {hf:,.{digits}f}"


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f}%"


def table_cells(row: Row) -> list[str]:
    return [row.workload, row.shape, row.mode, f"{row.hf.tokens_per_s:,.0f}", f"{row.ours.tokens_per_s:,.0f}",
            f"{row.ratio:.2f}", _percent(row.mfu_ours), _percent(row.mfu_hf),
            _pair(row.ours.peak_mem_mib, row.hf.peak_mem_mib, 0), _pair(row.ours.compile_s, row.hf.compile_s, 1),
            f"{row.collation_ms:.2f}"]


COLUMNS = ["workload", "shape", "mode", "HF tok/s", "ours tok/s", "ours/HF", "MFU ours", "MFU HF",
           "peak mem MiB (ours / HF)", "compile s (ours / HF)", "collation ms"]


def print_table(rows: list[Row], note_lines: list[str], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print_plain_table(rows, note_lines, title)
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: no terminal width to fit, do not wrap the cells
    table = Table(title=title)
    for index, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if index < 3 else "right")
    for row in rows:
        table.add_row(*table_cells(row))
    console.print(table)
    for line in note_lines:
        console.print(f"- {line}", highlight=False, markup=False)


def print_plain_table(rows: list[Row], note_lines: list[str], title: str) -> None:
    cells = [COLUMNS, *(table_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    print(title)
    for line in cells:
        print("  ".join(cell.ljust(width) if i < 3 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(line, widths, strict=True))))
    for line in note_lines:
        print(f"- {line}")


def write_json(path: Path, rows: list[Row], note_lines: list[str], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "notes": note_lines, "rows": [asdict(row) for row in rows]}, indent=2) + "\n")


# ---- CLI ---------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--workloads", default="gpt2,bert,t5", help="comma-separated: gpt2, bert, t5")
    parser.add_argument("--sizes", help="comma-separated arch size presets (default: base on CUDA, tiny,mini on CPU)")
    parser.add_argument("--compile", choices=("off", "on", "both"), help="default: both on CUDA, off on CPU")
    parser.add_argument("--warmup", type=int, help="untimed steps per side (default: 5 on CUDA, 3 on CPU)")
    parser.add_argument("--steps", type=int, help="timed steps per side (default: 20 on CUDA, 10 on CPU)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads, both sides")
    parser.add_argument("--peak-tflops", type=float, help="peak FLOP/s for MFU (default: 989 on CUDA, none on CPU)")
    parser.add_argument("--vocab", help="vocabulary for every row: a number, or hf (default: hf at base/large, 4096)")
    parser.add_argument("--document-mask", action="store_true", help="ours attends within each packed document")
    parser.add_argument("--data-workers", type=int, help="ours: trainer.data_workers (default: 4 on CUDA as "
                        "trainer=gpu, 0 on CPU)")
    parser.add_argument("--attention", choices=("auto", "sdpa", "flex"), default="auto",
                        help="ours: trainer.attention (auto, as pretrain: FlexAttention on CUDA where a document "
                        "mask or T5's position bias would keep SDPA off its fused kernels)")
    parser.add_argument("--json", type=Path, help="where the rows go (default: a file in the temp directory)")
    return parser.parse_args(argv)


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    return torch.device(name)


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def settings_from(args: argparse.Namespace) -> Settings:
    """The measurement settings, with the device's defaults where an option is not given."""
    device = choose_device(args.device)
    cuda = device.type == "cuda"
    settings = Settings(
        device=device,
        warmup=args.warmup if args.warmup is not None else (5 if cuda else 3),
        steps=args.steps if args.steps is not None else (20 if cuda else 10),
        peak_tflops=args.peak_tflops if args.peak_tflops is not None else (H100_BF16_DENSE_TFLOPS if cuda else None),
        document_mask=args.document_mask,
        data_workers=args.data_workers if args.data_workers is not None else (4 if cuda else 0),
        attention=args.attention)
    if settings.steps < 1 or settings.warmup < 0 or settings.data_workers < 0:
        raise SystemExit("--steps must be at least 1, --warmup and --data-workers at least 0")
    return settings


def shapes_from(args: argparse.Namespace, device: torch.device) -> list[Shape]:
    workloads = comma_list(args.workloads)
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}")
    sizes = comma_list(args.sizes or ("base" if device.type == "cuda" else "tiny,mini"))
    vocab = None if args.vocab in (None, "hf") else int(args.vocab)
    shapes = [make_shape(workload, size, vocab) for size in sizes for workload in workloads]
    if args.vocab == "hf":
        shapes = [replace(shape, vocab=WORKLOADS[shape.workload].hf_vocab) for shape in shapes]
    return shapes


def main(argv: list[str] | None = None) -> None:
    import transformers

    args = parse_args(argv)
    settings = settings_from(args)
    shapes = shapes_from(args, settings.device)
    cuda = settings.device.type == "cuda"
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile or ("both" if cuda else "off")]
    json_path = args.json or Path(tempfile.gettempdir()) / \
        f"pretrainer-bench-{settings.device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    torch.set_num_threads(args.threads)
    header = (f"device {torch.cuda.get_device_name(settings.device) if cuda else 'cpu'}, "
              f"threads {torch.get_num_threads()} (both sides), torch {torch.__version__}, "
              f"transformers {transformers.__version__}, warm-up {settings.warmup} + {settings.steps} timed steps "
              "per side")
    print(header, flush=True)

    def progress(row: Row) -> None:
        print(f"  {row.workload} {row.shape} {row.mode}: ours {row.ours.tokens_per_s:,.0f} tok/s, "
              f"HF {row.hf.tokens_per_s:,.0f} tok/s", file=sys.stderr, flush=True)

    rows = run_benchmark(shapes, modes, settings, progress)
    note_lines = notes(rows, settings)
    print_table(rows, note_lines, "Training throughput: pretrainer vs transformers (same shapes)")
    write_json(json_path, rows, note_lines, {"header": header, "settings": {**asdict(settings), "device": str(
        settings.device)}, "threads": torch.get_num_threads(), "mfu_formula": MFU_FORMULA})
    print(f"JSON: {json_path}")


if __name__ == "__main__":
    main()
