"""Fine-tuning checks: a saved model must be fed the ids it was trained on.

`tuner train --init-from DIR` encodes the corpus with DIR/tokenizer.json through
`data.load_token_data(..., tokenizer_file=...)`, never with a newly trained tokenizer.
"""

from __future__ import annotations

from tuner.config import ConfigError
from tuner.data import TokenData
from tuner.saved import SavedModel


def check_vocab(saved: SavedModel, data: TokenData) -> None:
    rows = (
        saved.model.get_input_embeddings().num_embeddings
        if hasattr(saved.model, "config")
        else saved.model.embed.num_embeddings
    )
    if data.vocab_size > rows:
        raise ConfigError(
            f"--init-from {saved.path}: the tokenizer has {data.vocab_size} tokens "
            f"but the model only {rows} embeddings"
        )
