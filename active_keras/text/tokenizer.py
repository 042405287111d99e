"""WordPiece tokenisation of captions with tensorflow-text, to fixed length.

The vocabulary is learned from the training captions (offline, with
tensorflow-text's `bert_vocab_from_dataset`) and saved as one token per line,
so a run writes it into its model directory and evaluation or later runs
reuse exactly the same ids.

Example:

```python
from active_keras.text import tokenizer

tok = tokenizer.load_or_learn("runs/clip", train_captions, vocab_size=2000)
ids = tok(["animals cat nicu buculei"])  # int32 [1, 16]: [CLS] ... [SEP] 0 0 ...
```
"""

import os

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

from active_keras import files

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
RESERVED = (PAD, UNK, CLS, SEP)  # PAD is id 0: the text tower masks id 0 out.
VOCAB_FILENAME = "vocab.txt"


class CaptionTokenizer:
    """Lower-cased WordPiece tokenizer producing `[CLS] pieces [SEP]` padded with 0.

    Works eagerly and inside `tf.data` / `tf.function`.

    Args:
        vocab: List of tokens; the first four must be `RESERVED`.
        sequence_length: Output length; longer captions are truncated (keeping
            the final `[SEP]`).
    """

    def __init__(self, vocab, sequence_length=16):
        vocab = list(vocab)
        if tuple(vocab[: len(RESERVED)]) != RESERVED:
            raise ValueError(f"The vocabulary must start with {RESERVED}; got {vocab[:4]}.")
        if sequence_length < 3:
            raise ValueError(f"sequence_length must be >= 3, got {sequence_length}.")
        self.vocab = vocab
        self.sequence_length = int(sequence_length)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)
            ),
            default_value=vocab.index(UNK),
        )
        self._tokenizer = tf_text.BertTokenizer(
            table, lower_case=True, unknown_token=UNK, token_out_type=tf.int64
        )

    @property
    def vocab_size(self):
        return len(self.vocab)

    @property
    def pad_id(self):
        return self.vocab.index(PAD)

    def __call__(self, texts):
        """Tokenises a string or a `[N]` batch of strings into int32 `[N, sequence_length]`."""
        texts = tf.convert_to_tensor(texts, tf.string)
        scalar = texts.shape.rank == 0
        texts = tf.reshape(texts, [-1])
        pieces = self._tokenizer.tokenize(texts).merge_dims(-2, -1)  # [N, (pieces)]
        pieces = pieces[:, : self.sequence_length - 2]
        n = tf.shape(texts)[0]
        cls = tf.fill([n, 1], tf.constant(self.vocab.index(CLS), tf.int64))
        sep = tf.fill([n, 1], tf.constant(self.vocab.index(SEP), tf.int64))
        ids = tf.concat([cls, pieces, sep], axis=1)
        dense = ids.to_tensor(default_value=self.pad_id, shape=[None, self.sequence_length])
        dense = tf.cast(dense, tf.int32)
        return dense[0] if scalar else dense

    def detokenize(self, ids):
        """Ids `[N, L]` back to strings (special tokens dropped), for inspection."""
        words = self._tokenizer.detokenize(tf.cast(ids, tf.int64))
        words = tf.ragged.boolean_mask(
            words, tf.logical_not(tf.reduce_any(words[..., None] == list(RESERVED), -1))
        )
        return tf.strings.reduce_join(words, axis=-1, separator=" ")

    def save(self, path):
        """Writes the vocabulary, one token per line (atomically on a local disk)."""
        text = "\n".join(self.vocab) + "\n"
        if "://" in path:  # A bucket: its objects appear whole.
            with tf.io.gfile.GFile(path, "w") as f:
                f.write(text)
            return
        with files.atomic_file(path, encoding="utf-8") as f:
            f.write(text)

    @classmethod
    def load(cls, path, sequence_length=16):
        """Reads a vocabulary written by `save`.

        Raises:
            ValueError: The file is truncated (no final newline) or lacks the
                reserved tokens: ids would silently mean other words.
        """
        with tf.io.gfile.GFile(path) as f:
            text = f.read()
        vocab = [line for line in text.split("\n") if line]
        missing = [t for t in RESERVED if t not in vocab]
        if not text.endswith("\n") or missing:
            raise ValueError(
                f"The vocabulary {path!r} is truncated or damaged (no final newline, or missing "
                f"{missing}); delete it to learn it again."
            )
        return cls(vocab, sequence_length)

    @classmethod
    def learn(cls, captions, vocab_size=2000, sequence_length=16):
        """Learns a WordPiece vocabulary of at most `vocab_size` tokens from `captions`."""
        dataset = tf.data.Dataset.from_tensor_slices(list(captions)).batch(1024)
        vocab = bert_vocab_from_dataset.bert_vocab_from_dataset(
            dataset,
            vocab_size=vocab_size,
            reserved_tokens=list(RESERVED),
            bert_tokenizer_params={"lower_case": True},
            learn_params={},
        )
        return cls(vocab[:vocab_size], sequence_length)


def load_or_learn(model_dir, captions, vocab_size=2000, sequence_length=16):
    """Loads `model_dir/vocab.txt` if present; otherwise learns it from `captions` and saves it.

    Args:
        model_dir: Run directory (created if needed); `None` learns without saving.
        captions: Training captions (only read when the vocabulary is learned).
        vocab_size: Maximum vocabulary size when learning.
        sequence_length: Output length of the tokenizer.
    """
    path = os.path.join(model_dir, VOCAB_FILENAME) if model_dir else None
    if path and tf.io.gfile.exists(path):
        return CaptionTokenizer.load(path, sequence_length)
    tokenizer = CaptionTokenizer.learn(captions, vocab_size, sequence_length)
    if path:
        tf.io.gfile.makedirs(model_dir)
        tokenizer.save(path)
    return tokenizer
