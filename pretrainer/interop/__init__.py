"""Hugging Face `transformers` interop: export runs as BERT / MegatronBERT / ELECTRA / GPT-2 /
T5 checkpoints and import those into our models, with identical logits (see `pretrainer.interop.hf`).

Needs the optional `hf` extra (`pip install 'pretrainer[hf]'`); transformers is imported
only when a function is called.
"""

from pretrainer.interop.hf import HFImport, build_lm_head, export_hf, load_hf_model

__all__ = ["HFImport", "build_lm_head", "export_hf", "load_hf_model"]
