"""Text processing: WordPiece tokenisation of captions."""

from active_keras.text.tokenizer import CaptionTokenizer, load_or_learn

__all__ = ["CaptionTokenizer", "load_or_learn"]
