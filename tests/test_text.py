"""The caption tokenizer and text encoder."""

import pytest
import torch

from minisora.data import MovingMNIST
from minisora.text import NULL, PAD, TextEncoder, Tokenizer


def test_every_caption_word_is_in_the_vocabulary():
    tok = Tokenizer()
    for config in ("standard", "stochastic"):
        for k in (1, 2):
            data = MovingMNIST("train", 60, seed=3, config=config, digits="mnist5k", num_digits=k)
            for i in range(len(data)):
                item = data[i]
                for text in (item["caption"], item["description"]):
                    assert tok.decode(tok.encode(text)) == " ".join(tok.words(text))


def test_number_words_padding_and_null():
    tok = Tokenizer(max_len=8)
    assert torch.equal(tok.encode("three and 7"), tok.encode("3 AND seven"))
    ids = tok.encode("3")
    assert ids.shape == (8,) and (ids[1:] == tok.ids[PAD]).all()
    null = tok.null(2)
    assert null.shape == (2, 8) and (null[:, 0] == tok.ids[NULL]).all() and (null[:, 1:] == tok.ids[PAD]).all()


def test_unknown_words_name_the_nearest_known_ones():
    tok = Tokenizer()
    with pytest.raises(ValueError, match=r"'bouncng' \(nearest known: bouncing"):
        tok.encode("a 3 bouncng")
    with pytest.raises(ValueError, match="empty prompt"):
        tok.encode("  ")
    with pytest.raises(ValueError, match="more than the maximum 4"):
        Tokenizer(max_len=4).encode("1 and 2 and 3")


def test_padding_does_not_change_the_encoding_of_words():
    torch.manual_seed(0)
    enc = TextEncoder(len(Tokenizer()), dim=32, depth=2).eval()
    short, long = Tokenizer(max_len=6), Tokenizer(max_len=12)
    a, words_a, pooled_a = enc(short.encode("3 and 7")[None])
    b, words_b, pooled_b = enc(long.encode("3 and 7")[None])
    torch.testing.assert_close(a[:, :3], b[:, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled_a, pooled_b, atol=1e-5, rtol=1e-5)
    assert words_a.sum() == words_b.sum() == 3
