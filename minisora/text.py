"""Text: a word-level tokenizer over the caption vocabulary and a small transformer text encoder.

Sora conditions on a large language model's encoding of a descriptive caption. Our captions come
from a few dozen words, so a word-level vocabulary and a two-layer transformer, trained together
with the DiT, are enough. Two special tokens:

* ``<pad>`` fills every prompt up to the fixed length; padding is masked out of attention;
* ``<null>`` alone is the **null prompt**, the "no condition" of classifier-free guidance. Its
  embedding is learned like any word's: training replaces a caption by the null prompt with some
  probability, and sampling contrasts the prompt with it.
"""

from __future__ import annotations

import difflib
import re

import torch
from torch import nn

from .captions import HEADINGS, NUMBER_WORDS, REGIONS, WALLS
from .patches import sincos_1d
from .vit import Block

PAD, NULL = "<pad>", "<null>"
TEMPLATE_WORDS = ("a", "an", "starts", "moves", "and", "stays", "still", "bouncing", "off", "then", "the",
                  "wall", "corner", "without", "slowly", "quickly", ",", ".")


def caption_words() -> list[str]:
    """Every word a caption can contain (see ``captions.py``), digits written as digits."""
    phrases = [p for row in REGIONS for p in row] + list(HEADINGS) + list(WALLS.values())
    words = {w for p in phrases for w in p.split()} | set(TEMPLATE_WORDS) | {str(d) for d in range(10)}
    return sorted(words)


class Tokenizer:
    """Words -> ids, with number words read as digits ("three" -> "3") and punctuation as tokens."""

    def __init__(self, max_len: int = 96):
        self.vocab = [PAD, NULL] + caption_words()
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        words = re.findall(r"[a-z0-9]+|[,.]", text.lower())
        return [str(NUMBER_WORDS.index(w)) if w in NUMBER_WORDS else w for w in words]

    def encode(self, text: str) -> torch.Tensor:
        """A prompt -> ids (max_len,), padded with <pad>; unknown words and too-long prompts are errors."""
        words = self.words(text)
        unknown = [w for w in words if w not in self.ids]
        if unknown:
            hints = {w: difflib.get_close_matches(w, self.vocab[2:], n=3, cutoff=0.5) for w in unknown}
            raise ValueError(f"unknown word(s) in prompt {text!r}: "
                             + "; ".join(f"{w!r} (nearest known: {', '.join(h) or 'none'})" for w, h in hints.items())
                             + f". Known words: {' '.join(self.vocab[2:])}")
        if not words:
            raise ValueError(f"empty prompt {text!r}: say which digits, e.g. '3' or '3 and 7'")
        if len(words) > self.max_len:
            raise ValueError(f"prompt has {len(words)} words, more than the maximum {self.max_len}")
        ids = [self.ids[w] for w in words]
        return torch.tensor(ids + [self.ids[PAD]] * (self.max_len - len(ids)))

    def batch(self, texts: list[str]) -> torch.Tensor:
        """Prompts -> ids (B, max_len)."""
        return torch.stack([self.encode(t) for t in texts])

    def null(self, batch: int) -> torch.Tensor:
        """The null prompt, ``<null>`` then padding: (B, max_len)."""
        ids = torch.full((batch, self.max_len), self.ids[PAD])
        ids[:, 0] = self.ids[NULL]
        return ids

    def decode(self, ids: torch.Tensor) -> str:
        return " ".join(self.vocab[i] for i in ids.tolist() if i != self.ids[PAD])


class TextEncoder(nn.Module):
    """ids (B, L) -> token features (B, L, D), the padding mask (B, L) (True = a word) and a pooled (B, D).

    Word embeddings + fixed sin-cos positions, then pre-norm transformer blocks that attend over words only.
    Padding after the batch's longest prompt is cut first (L = that length): it is masked everywhere, so the
    result is the same, at a fraction of the cost for short prompts.
    """

    def __init__(self, vocab_size: int, dim: int, depth: int = 2, heads: int = 4, max_len: int = 96):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.register_buffer("positions", sincos_1d(torch.arange(max_len), dim), persistent=False)  # (L, D)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = ids[:, : int((ids != 0).any(0).nonzero().max()) + 1]  # (B, L): up to the longest prompt
        words = ids != 0  # (B, L): <pad> is id 0
        x = self.embed(ids) + self.positions[: ids.shape[1]]  # (B, L, D)
        attend = words[:, None, None, :]  # (B, 1, 1, L): every query sees the words, never the padding
        for block in self.blocks:
            x = block(x, attend)
        x = self.norm(x)
        pooled = (x * words[..., None]).sum(1) / words.sum(1, keepdim=True)  # (B, D) mean over words
        return x, words, pooled
