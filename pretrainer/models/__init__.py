"""Pure `nn.Module`s: the transformer bodies and small heads. No objective logic here."""

from pretrainer.models.heads import ClassificationHead, LMHead
from pretrainer.models.transformer import EncoderDecoder, TransformerBody, build_body

__all__ = ["ClassificationHead", "EncoderDecoder", "LMHead", "TransformerBody", "build_body"]
