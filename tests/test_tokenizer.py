import numpy as np
import pytest

from minirlhf.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer


def test_round_trip(tokenizer):
    text = "the pizza was great. rating: 5/5"
    ids = tokenizer.encode(text, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == len(text) + 2
    assert tokenizer.decode(ids) == text


def test_hand_computed_ids():
    tok = CharTokenizer("abc")
    assert tok.vocab_size == 6
    assert tok.encode("cab", bos=True) == [BOS_ID, 5, 3, 4]
    assert tok.decode([BOS_ID, 5, EOS_ID, 3]) == "c"  # stops at EOS
    assert tok.decode([5, EOS_ID, 3], stop_at_eos=False) == "ca"


@pytest.mark.parametrize("padding", ["right", "left"])
def test_batch_padding_and_mask(padding):
    tok = CharTokenizer("ab")
    tokens, mask = tok.encode_batch(["ab", "b"], bos=True, padding=padding)
    assert tokens.shape == mask.shape == (2, 3) and mask.dtype == bool
    if padding == "right":
        np.testing.assert_array_equal(tokens, [[BOS_ID, 3, 4], [BOS_ID, 4, PAD_ID]])
        np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 1, 0]])
    else:
        np.testing.assert_array_equal(tokens, [[BOS_ID, 3, 4], [PAD_ID, BOS_ID, 4]])
        np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 1, 1]])
    assert tok.decode_batch(tokens, mask) == ["ab", "b"]


def test_unknown_character_is_an_error_naming_it(tokenizer):
    with pytest.raises(ValueError, match=r"unknown character 'Q' at position 4"):
        tokenizer.encode("the Qizza")


def test_too_long_for_length_is_an_error_not_a_cut():
    with pytest.raises(ValueError, match="more than length=2"):
        CharTokenizer("ab").encode_batch(["abab"], length=2)


def test_bad_alphabet_and_json_round_trip():
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer("aba")
    tok = CharTokenizer("xyz")
    assert CharTokenizer.from_json(tok.to_json()) == tok
    with pytest.raises(ValueError, match="not a character-tokenizer"):
        CharTokenizer.from_json('{"type": "bpe"}')
