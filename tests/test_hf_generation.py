"""A saved model in the usual Hugging Face path: a pipeline asked for more tokens than the model
has positions generates them (it used to raise IndexError), a call without a length stops at the
context, and tuner itself still sees exactly the model it trained."""

from __future__ import annotations

import json

import pytest
import torch

from tuner.config import RunConfig, from_dict
from tuner.hf_generation import CONTEXT_KEY, EXTRA_POSITIONS
from tuner.models import build_model, max_positions
from tuner.saved import generate_text, load_saved, sample, save_model_dir

CONTEXT = 64
PROMPT = "ROMEO: But soft, what light"


def saved_model(tmp_path, tiny_data, tiny_config, arch: str):
    """A freshly initialised 64-position model saved the way `tuner train` saves it."""
    raw = tiny_config.to_dict()
    raw["model"] = {**raw["model"], "arch": arch}
    raw["train"] = {**raw["train"], "seq_len": CONTEXT}
    config = from_dict(RunConfig, raw)
    torch.manual_seed(0)
    model = build_model(config.model, tiny_data.vocab_size, CONTEXT).eval()
    folder = tmp_path / arch
    folder.mkdir()
    save_model_dir(folder, model, tiny_data.tokenizer_path, config, {}, {})
    return folder, model


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_pipeline_generates_200_new_tokens_from_a_saved_64_position_model(
    tmp_path, tiny_data, tiny_config, arch
):
    from transformers import pipeline

    folder, _ = saved_model(tmp_path, tiny_data, tiny_config, arch)
    generator = pipeline("text-generation", model=str(folder))
    prompt_ids = generator.tokenizer(PROMPT)["input_ids"]
    long = generator(PROMPT, max_new_tokens=200, min_new_tokens=200, return_tensors=True)
    assert len(long[0]["generated_token_ids"]) == len(prompt_ids) + 200
    text = generator(PROMPT, max_new_tokens=200, do_sample=False)[0]["generated_text"]
    assert text.startswith(PROMPT) and len(text) > len(PROMPT)
    # no length asked (the EOS token held back so that only the context can stop it)
    default = generator(PROMPT, min_new_tokens=CONTEXT - len(prompt_ids), return_tensors=True)
    assert len(default[0]["generated_token_ids"]) == CONTEXT


def test_the_saved_gpt2_is_the_trained_one_within_its_context(tmp_path, tiny_data, tiny_config):
    from transformers import AutoModelForCausalLM

    folder, trained = saved_model(tmp_path, tiny_data, tiny_config, "gpt2")
    config = json.loads((folder / "config.json").read_text())
    assert config[CONTEXT_KEY] == CONTEXT and config["n_positions"] == CONTEXT + EXTRA_POSITIONS
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["max_length"] == CONTEXT
    hub = AutoModelForCausalLM.from_pretrained(folder).eval()
    table = hub.transformer.wpe.weight.data
    assert torch.equal(table[:CONTEXT], trained.transformer.wpe.weight.data)
    assert torch.equal(table[CONTEXT:], table[CONTEXT - 1].expand(EXTRA_POSITIONS, -1))
    ids = torch.randint(0, tiny_data.vocab_size, (2, CONTEXT))
    with torch.no_grad():
        assert torch.allclose(hub(input_ids=ids).logits, trained(input_ids=ids).logits)
    back = load_saved(folder).model  # tuner's view: the 64 trained positions only
    assert max_positions(back) == CONTEXT
    assert torch.equal(back.transformer.wpe.weight.data, trained.transformer.wpe.weight.data)
    assert max_positions(trained) == CONTEXT  # saving did not touch the trained model


def test_tuner_generate_slides_past_the_context(tmp_path, tiny_data, tiny_config):
    folder, _ = saved_model(tmp_path, tiny_data, tiny_config, "gpt2")
    saved = load_saved(folder)
    ids = saved.tokenizer(PROMPT)["input_ids"]
    assert len(sample(saved.model, ids, 150, temperature=0.0)) == 150  # window of 64
    assert generate_text(folder, PROMPT, max_new_tokens=150).startswith(PROMPT)
