"""Lightning 0.9's ``BLEUScore`` module (torchmetrics computes it)."""
from __future__ import annotations

from hookloop.engine.metrics.classification import _Functional
from hookloop.engine.metrics.functional.nlp import bleu_score


class BLEUScore(_Functional):
    """BLEU of ``(translate_corpus, reference_corpus)``, tokenized as 0.9 took them."""

    function = staticmethod(bleu_score)

    def __init__(self, n_gram: int = 4, smooth: bool = False) -> None:
        super().__init__("bleu", dict(n_gram=n_gram, smooth=smooth))
