"""The grammar's CLIPTokenizer."""
from transformers import CLIPTokenizer

from harness.worlds.tiny_sd15 import dataset, grammar
from harness.worlds.tiny_sd15.judge import PIPELINE
from harness.worlds.tiny_sd15.tokenizer import build_tokenizer


def test_tokenizer_round_trips_the_grammar_with_one_token_per_word():
    tok = build_tokenizer()
    for s in dataset.sample_scenes(0, 300):
        ids = tok(s.caption)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert len(ids) == len(s.caption.split()) + 2
        assert tok.decode(ids, skip_special_tokens=True) == s.caption
    assert len(grammar.vocabulary_words()) == len(set(grammar.vocabulary_words()))


def test_longest_caption_fits_the_context():
    tok = build_tokenizer()
    longest = max((s.caption for s in dataset.sample_scenes(0, 2000)), key=lambda c: len(c.split()))
    assert len(tok(longest)["input_ids"]) <= tok.model_max_length


def test_shipped_tokenizer_is_a_grammar_tokenizer():
    # The BPE trainer's merge order differs between `tokenizers` releases, so a rebuilt
    # tokenizer may number tokens differently; the shipped one is the world's reference.
    shipped = CLIPTokenizer.from_pretrained(PIPELINE / "tokenizer")
    assert shipped.model_max_length == build_tokenizer().model_max_length
    for s in dataset.sample_scenes(2, 200):
        ids = shipped(s.caption)["input_ids"]
        assert len(ids) == len(s.caption.split()) + 2
        assert shipped.decode(ids, skip_special_tokens=True) == s.caption
