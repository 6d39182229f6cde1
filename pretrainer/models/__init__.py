"""Pure `nn.Module`s: the transformer body and small heads. No objective logic here."""

from pretrainer.models.heads import ClassificationHead, LMHead
from pretrainer.models.transformer import TransformerBody

__all__ = ["ClassificationHead", "LMHead", "TransformerBody"]
