"""Lightning 0.9's ``bleu_score`` (``pytorch_lightning.metrics.functional.nlp``), computed by torchmetrics."""
from __future__ import annotations

from typing import List, Sequence

import torch

from hookloop.engine.metrics.functional._backend import torchmetrics_functional


def bleu_score(translate_corpus: Sequence[Sequence[str]], reference_corpus: Sequence[Sequence[Sequence[str]]],
               n_gram: int = 4, smooth: bool = False) -> torch.Tensor:
    """BLEU of tokenized translations (one list of tokens each) against their tokenized references (a list
    of token lists per translation), as 0.9 took them."""
    functional = torchmetrics_functional("bleu_score")
    translations: List[str] = [" ".join(tokens) for tokens in translate_corpus]
    references = [[" ".join(tokens) for tokens in refs] for refs in reference_corpus]
    return functional.text.bleu_score(translations, references, n_gram=n_gram, smooth=smooth)
