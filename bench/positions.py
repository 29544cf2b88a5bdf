"""How well a saved GPT-2 predicts past its context in transformers, against tuner's window.

A GPT-2 trained at `seq_len` 64 is saved the way `tuner train` saves it (the position table
extended with copies of its last trained row, tuner.hf_generation) and loaded back with
`AutoModelForCausalLM`, as a Hugging Face user would. On validation text cut into sequences of
4 x 64 tokens it scores every next token two ways:

- transformers: one forward pass over the whole sequence (what `generate` and pipelines do
  past the context: every token after position 63 is read at position 63);
- window: each token predicted from at most the 64 tokens before it (what `tuner generate`
  does, and the only way the model sees text shaped like its training windows).

Inside the context both are the same model on the same tokens. Losses (nats/token) are
printed per range of target positions.

  python bench/positions.py --quick   # ~3 min: 160k training tokens, 8 sequences
  python bench/positions.py           # 1M training tokens, 32 sequences
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    THREADS_HELP,
    Report,
    machine,
    machine_line,
    markdown_table,
    quiet,
    save_results,
    set_threads,
    use_temp_stores,
)

CONTEXT = 64
LENGTH = 4 * CONTEXT
RANGES = ((1, CONTEXT), (CONTEXT, 2 * CONTEXT), (2 * CONTEXT, LENGTH))
"""Target positions [start, end): tokens 1..63 are inside the context."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    args = parser.parse_args()
    quiet()
    use_temp_stores("positions")
    threads = set_threads(args.threads)
    tokens, n_seq = (163_840, 8) if args.quick else (1_048_576, 32)

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from tuner.config import RunConfig, from_dict
    from tuner.data import load_token_data
    from tuner.saved import load_saved, save_model_dir
    from tuner.train import train_run

    report = Report()
    report(f"machine: {machine_line()}")
    config = from_dict(
        RunConfig,
        {
            "data": {"source": "shakespeare"},
            "tokenizer": {"kind": "bpe", "vocab_size": 2048},
            "model": {"arch": "gpt2", "size": "micro"},
            "optim": {"lr": 0.003},
            "train": {
                "batch_size": 16,
                "seq_len": CONTEXT,
                "tokens": tokens,
                "milestones": 1,
                "threads": threads,
            },
        },
    )
    data = load_token_data(config.data, config.tokenizer)
    result = train_run(config, data)
    report(
        f"trained GPT-2 micro at seq_len {CONTEXT} on {tokens} tokens: val loss "
        f"{result.metrics['val_loss']:.4f}"
    )
    folder = Path(tempfile.mkdtemp(prefix="positions-")) / "model"
    folder.mkdir()
    save_model_dir(folder, result.model, data.tokenizer_path, config, {}, {})
    hub = AutoModelForCausalLM.from_pretrained(folder).eval()
    window = load_saved(folder).model.eval()
    x = torch.tensor(data.val[: n_seq * LENGTH].astype("int64")).view(n_seq, LENGTH)

    with torch.no_grad():
        logits = hub(input_ids=x).logits[:, :-1]
        whole = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(0)
        slid = []
        for t in range(1, LENGTH):
            last = window(input_ids=x[:, max(0, t - CONTEXT) : t]).logits[:, -1]
            slid.append(F.cross_entropy(last, x[:, t], reduction="none").mean())
        slid = torch.stack(slid)
    rows, figures = [], []
    for start, end in RANGES:
        a, b = whole[start - 1 : end - 1].mean().item(), slid[start - 1 : end - 1].mean().item()
        rows.append([f"{start}-{end - 1}", a, b, a - b])
        figures.append({"targets": [start, end - 1], "transformers": a, "window": b})
    report("")
    report(f"{n_seq} validation sequences of {LENGTH} tokens, loss in nats/token:")
    report(markdown_table(["target positions", "transformers", "window", "difference"], rows))
    inside = abs(rows[0][3])
    report(f"inside the context the two agree to {inside:.2e} nats (same model, same tokens)")
    worst = max(row[3] for row in rows[1:])
    met = worst < 0.1
    report(
        f"goal past the context, transformers within 0.1 nats/token of the window: "
        f"{worst:+.3f} ({'met' if met else 'NOT met'})"
    )
    name = "positions-quick" if args.quick else "positions"
    command = "python bench/positions.py" + (" --quick" if args.quick else "")
    payload = {
        "command": command,
        "machine": machine(),
        "train_tokens": tokens,
        "val_loss": result.metrics["val_loss"],
        "ranges": figures,
    }
    path = save_results(name, payload, f"`{command}`\n\n" + report.text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
