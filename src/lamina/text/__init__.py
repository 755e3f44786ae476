"""Text application on Hugging Face tokenizers and transformers: TextDataLoaders, text_classifier_learner,
language_model_learner. Importing it imports transformers lazily (only when a model is built)."""

from lamina.core import TensorText
from lamina.text.data import (
    MaskTokens,
    TextBlock,
    TextDataLoaders,
    padding_waste,
    read_text_files,
    tokenizer_of,
)
from lamina.text.learner import (
    language_model_learner,
    load_encoder,
    save_encoder,
    text_classifier_learner,
    top_losses_table,
)
from lamina.text.losses import TextLMLoss
from lamina.text.models import (
    ALLOWED_MODEL_TYPES,
    TextClassifier,
    TextLM,
    create_text_classifier,
    create_text_lm,
    text_splitter,
)
from lamina.text.tokenize import DEFAULT_MODEL, TitledStr, Tokenize, load_tokenizer, model_path

__all__ = [
    "ALLOWED_MODEL_TYPES",
    "DEFAULT_MODEL",
    "MaskTokens",
    "TensorText",
    "TextBlock",
    "TextClassifier",
    "TextDataLoaders",
    "TextLM",
    "TextLMLoss",
    "TitledStr",
    "Tokenize",
    "create_text_classifier",
    "create_text_lm",
    "language_model_learner",
    "load_encoder",
    "load_tokenizer",
    "model_path",
    "padding_waste",
    "read_text_files",
    "save_encoder",
    "text_classifier_learner",
    "text_splitter",
    "tokenizer_of",
    "top_losses_table",
]
