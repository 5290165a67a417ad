"""A word-level tokenizer built from the caption vocabulary and a tiny transformer text encoder
(trained from scratch) for the FaRL-style image-text contrastive objective."""

from __future__ import annotations

import re

import torch
from torch import nn

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    def __init__(self, vocab: list[str]):
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad, self.unk, self.bos, self.eos = (self.index[s] for s in SPECIALS)

    @classmethod
    def build(cls, captions: list[str]) -> WordTokenizer:
        words = sorted({w for c in captions for w in split_words(c)})
        return cls(SPECIALS + words)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, captions: list[str], max_len: int = 32) -> torch.Tensor:
        out = torch.full((len(captions), max_len), self.pad, dtype=torch.long)
        for i, c in enumerate(captions):
            ids = [self.bos] + [self.index.get(w, self.unk) for w in split_words(c)][: max_len - 2] + [self.eos]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class TextEncoder(nn.Module):
    def __init__(self, vocab_size: int, width: int = 128, depth: int = 2, heads: int = 4, max_len: int = 32,
                 out_dim: int = 128, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        nn.init.normal_(self.pos, std=0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == self.pad_id
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]
        x = self.norm(self.blocks(x, src_key_padding_mask=pad))
        keep = (~pad).float()[..., None]
        x = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.proj(x)
