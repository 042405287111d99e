"""WordPiece caption tokenizer: learning, fixed length, saving, tf.data."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pathlib

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


class TokenizerTest(tf.test.TestCase):
    def test_learned_vocabulary_and_fixed_length(self):
        tok = learned()
        self.assertEqual(tok.vocab[:4], list(tokenizer.RESERVED))
        self.assertIn("animals", tok.vocab)
        self.assertIn("pizza", tok.vocab)
        ids = tok(["animals cat", "food"]).numpy()
        self.assertEqual(ids.shape, (2, 8))
        self.assertEqual(ids.dtype, np.int32)
        cls, sep = tok.vocab.index("[CLS]"), tok.vocab.index("[SEP]")
        animals, cat = tok.vocab.index("animals"), tok.vocab.index("cat")
        self.assertEqual(ids[0].tolist(), [cls, animals, cat, sep, 0, 0, 0, 0])
        # Lower-cased; a scalar in.
        self.assertEqual(tok("Animals CAT").numpy().tolist(), ids[0].tolist())

    def test_truncation_keeps_sep_and_unknown_maps_to_unk(self):
        tok = learned(length=5)
        ids = tok(["animals cat sitting nicu buculei food"]).numpy()[0]
        self.assertEqual(ids[-1], tok.vocab.index("[SEP]"))
        self.assertNotIn(0, ids)
        unk = tok(["\u4e2d"]).numpy()[0]  # A character never seen in training.
        self.assertIn(tok.vocab.index("[UNK]"), unk.tolist())

    def test_save_load_round_trip(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        tok = learned()
        path = str(tmp_dir / "vocab.txt")
        tok.save(path)
        again = tokenizer.CaptionTokenizer.load(path, sequence_length=8)
        self.assertEqual(again.vocab, tok.vocab)
        np.testing.assert_array_equal(again(CAPTIONS[:4]), tok(CAPTIONS[:4]))

    def test_load_or_learn_reuses_the_run_vocabulary(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        first = tokenizer.load_or_learn(str(tmp_dir), CAPTIONS, vocab_size=100, sequence_length=8)
        self.assertTrue((tmp_dir / tokenizer.VOCAB_FILENAME).exists())
        second = tokenizer.load_or_learn(str(tmp_dir), ["something else entirely"] * 50, 100, 8)
        self.assertEqual(second.vocab, first.vocab)

    def test_in_tf_data_and_tf_function(self):
        tok = learned()
        eager = tok(CAPTIONS[:4]).numpy()
        ds = tf.data.Dataset.from_tensor_slices(CAPTIONS[:4]).batch(2).map(tok)
        np.testing.assert_array_equal(np.concatenate(list(ds.as_numpy_iterator())), eager)
        np.testing.assert_array_equal(tf.function(tok)(tf.constant(CAPTIONS[:4])), eager)

    def test_detokenize(self):
        tok = learned()
        text = tok.detokenize(tok(["animals dog running"])).numpy()[0].decode()
        self.assertEqual(text, "animals dog running")


if __name__ == "__main__":
    tf.test.main()
