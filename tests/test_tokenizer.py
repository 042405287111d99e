"""WordPiece caption tokenizer: learning, fixed length, saving, tf.data."""

import numpy as np
import tensorflow as tf

from active_keras.text import tokenizer

CAPTIONS = [
    "animals cat sitting nicu buculei",
    "animals dog running",
    "food pizza margherita",
    "tools forchettoni da grigliat",
] * 30


def learned(length=8):
    return tokenizer.CaptionTokenizer.learn(CAPTIONS, vocab_size=100, sequence_length=length)


def test_learned_vocabulary_and_fixed_length():
    tok = learned()
    assert tok.vocab[:4] == list(tokenizer.RESERVED)
    assert "animals" in tok.vocab and "pizza" in tok.vocab
    ids = tok(["animals cat", "food"]).numpy()
    assert ids.shape == (2, 8) and ids.dtype == np.int32
    cls, sep = tok.vocab.index("[CLS]"), tok.vocab.index("[SEP]")
    animals, cat = tok.vocab.index("animals"), tok.vocab.index("cat")
    assert ids[0].tolist() == [cls, animals, cat, sep, 0, 0, 0, 0]
    assert tok("Animals CAT").numpy().tolist() == ids[0].tolist()  # lower-cased; scalar in.


def test_truncation_keeps_sep_and_unknown_maps_to_unk():
    tok = learned(length=5)
    ids = tok(["animals cat sitting nicu buculei food"]).numpy()[0]
    assert ids[-1] == tok.vocab.index("[SEP]") and 0 not in ids
    unk = tok(["\u4e2d"]).numpy()[0]  # A character never seen in training.
    assert tok.vocab.index("[UNK]") in unk.tolist()


def test_save_load_round_trip(tmp_path):
    tok = learned()
    path = str(tmp_path / "vocab.txt")
    tok.save(path)
    again = tokenizer.CaptionTokenizer.load(path, sequence_length=8)
    assert again.vocab == tok.vocab
    np.testing.assert_array_equal(again(CAPTIONS[:4]), tok(CAPTIONS[:4]))


def test_load_or_learn_reuses_the_run_vocabulary(tmp_path):
    first = tokenizer.load_or_learn(str(tmp_path), CAPTIONS, vocab_size=100, sequence_length=8)
    assert (tmp_path / tokenizer.VOCAB_FILENAME).exists()
    second = tokenizer.load_or_learn(str(tmp_path), ["something else entirely"] * 50, 100, 8)
    assert second.vocab == first.vocab


def test_in_tf_data_and_tf_function():
    tok = learned()
    eager = tok(CAPTIONS[:4]).numpy()
    ds = tf.data.Dataset.from_tensor_slices(CAPTIONS[:4]).batch(2).map(tok)
    np.testing.assert_array_equal(np.concatenate(list(ds.as_numpy_iterator())), eager)
    np.testing.assert_array_equal(tf.function(tok)(tf.constant(CAPTIONS[:4])), eager)


def test_detokenize():
    tok = learned()
    text = tok.detokenize(tok(["animals dog running"])).numpy()[0].decode()
    assert text == "animals dog running"
