"""The ``coldstream`` command. Subcommands are imported lazily, so ``coldstream info`` works whatever is missing."""

from __future__ import annotations

import importlib
import sys

# name -> (one-line help, "module:function" taking argv and returning an exit code)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("which backends (CUDA, Triton, xFormers, DALI, decoders) can run, and why not", "coldstream.info:main"),
    "demo": ("the main job: cores vs baselines on real photos and videos", "coldstream.train.demo:demo_main"),
    "train": ("train a temporal core from cached frozen features", "coldstream.train.cli:train_main"),
    "eval": ("evaluate a trained checkpoint on its eval split", "coldstream.train.cli:eval_main"),
    "stream": ("run a trained model over a video frame by frame", "coldstream.train.cli:stream_main"),
    "serve": ("serve many video streams at once through one model", "coldstream.serve.cli:serve_main"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: coldstream <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (help_, _) in COMMANDS.items()]
    lines.append("\n`coldstream <command> --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"coldstream: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func = COMMANDS[name][1].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
