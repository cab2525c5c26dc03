"""A real `CLIPTokenizer` whose BPE vocabulary is learned from the caption grammar.

The vocabulary holds CLIP's 256 byte-level symbols (so any text still tokenizes), CLIP's
special tokens, and merges learned by the `tokenizers` BPE trainer on the grammar's words,
so each grammar word becomes exactly one token.
"""
from __future__ import annotations

import json

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTokenizer

from . import grammar

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 32  # longest caption is 24 words; SD-1.5 uses 77


def build_tokenizer() -> CLIPTokenizer:
    words = grammar.vocabulary_words()
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
    )
    bpe.train_from_iterator(words, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = dict(model["vocab"])
    # CLIP also knows every byte symbol at the end of a word.
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    for special in (BOS, EOS):
        vocab[special] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)
    _check(tokenizer, words)
    return tokenizer


def _check(tokenizer: CLIPTokenizer, words: list[str]) -> None:
    for word in words:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise RuntimeError(f"tokenizer splits the grammar word {word!r} into {len(ids)} tokens")
