"""How long `tuner --help` takes, against a bare interpreter started the same way.

Each round runs `python -c pass` and `tuner --help` (the console script installed beside this
interpreter, as a user runs it; `python -m tuner` without one) back to back, alternating which
goes first, so a busy patch of a shared machine hits both; the report gives medians, the
ratio and what tuner adds over the bare interpreter, then the largest imports of one help
(`python -X importtime`), which is where any saving has to come from.

  python bench/cli_help.py --quick   # 5 rounds, a few seconds
  python bench/cli_help.py           # 30 rounds
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Report,
    machine,
    machine_line,
    markdown_table,
    median,
    save_results,
    tuner_command,
)

GOAL_SECONDS = 0.5
BARE = [sys.executable, "-c", "pass"]
HELP = [*tuner_command(), "--help"]
LABEL = "tuner --help" if len(HELP) == 2 else "python -m tuner --help"


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def largest_imports(top: int) -> list[tuple[str, float]]:
    """Top-level imports of one `tuner --help` by cumulative milliseconds."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tuner", "--help"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ).stderr
    rows = []
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        if name.startswith(" ") and not name.startswith("  "):  # one space: a top-level import
            rows.append((name.strip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5 rounds instead of 30")
    p.add_argument("--rounds", type=int, default=None)
    args = p.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 30)
    say = Report()
    info = machine()
    say(f"# tuner --help ({'quick' if args.quick else 'full'})")
    say(f"machine: {machine_line(info)}")
    say(f"command: python bench/cli_help.py {' '.join(sys.argv[1:])}")
    wall(HELP)  # the first run compiles bytecode and warms the page cache: not timed
    bare, help_ = [], []
    for r in range(rounds):
        pair = [(BARE, bare), (HELP, help_)]
        for cmd, out in pair if r % 2 == 0 else pair[::-1]:
            out.append(wall(cmd))
    b, h = median(bare), median(help_)
    say()
    say(f"median of {rounds} rounds, alternating order:")
    say(
        markdown_table(
            ["command", "median s", "min s", "max s"],
            [
                ["python -c pass", b, min(bare), max(bare)],
                [LABEL, h, min(help_), max(help_)],
            ],
        )
    )
    say(f"tuner --help / bare interpreter: {h / b:.2f}x; tuner adds {h - b:.3f} s")
    say()
    imports = largest_imports(8)
    say("largest top-level imports of one help (python -X importtime, cumulative):")
    say(markdown_table(["module", "ms"], [[name, round(ms, 1)] for name, ms in imports]))
    say()
    met = "met" if h < GOAL_SECONDS else "NOT met"
    say(f"goal tuner --help < {GOAL_SECONDS} s: {h:.3f} s ({met})")
    name = "cli_help-quick" if args.quick else "cli_help"
    payload = {"machine": info, "bare_seconds": bare, "help_seconds": help_, "imports": imports}
    save_results(name, payload, say.text)


if __name__ == "__main__":
    main()
