"""llmpipe: a DVC-native pipeline from raw text corpora to a trained, evaluated small LLM."""

__version__ = "0.1.0"
