"""The seed's argparse workflow with two models: ``--model_name`` picks which one adds its flags.

``parse_known_args`` reads ``--model_name`` first; then only that model's
``add_model_specific_args`` extends the parser, so ``--help`` and the accepted flags depend
on the choice. Every ``Trainer`` flag works too::

    python examples/two_models.py                      # the GAN, 3 epochs
    python examples/two_models.py --model_name mnist --hidden 64 --max_epochs 5 --fast_dev_run
    python examples/two_models.py --model_name mnist --help
"""
from __future__ import annotations

import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Optional, Sequence

# Runnable from a plain checkout (``python examples/two_models.py``), and importable: the
# models live next to this file, the engine one folder up.
_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from digits import DigitsClassifier  # noqa: E402  (the "mnist" model: handwritten digits)
from gan import GoodGAN  # noqa: E402

from engine import Trainer  # noqa: E402

MODELS = {"gan": GoodGAN, "mnist": DigitsClassifier}


def main(args: Namespace) -> Trainer:
    """Build the chosen model from every parsed argument and train it."""
    dict_args = vars(args)
    # Each model takes the flags it knows and ignores the rest (its **kwargs).
    model = MODELS[args.model_name](**dict_args)
    trainer = Trainer.from_argparse_args(args)
    trainer.fit(model)
    return trainer


def build_parser(argv: Optional[Sequence[str]] = None) -> ArgumentParser:
    """Program flags, Trainer flags, then the flags of the model named by ``--model_name``."""
    # No -h yet: `--help` must wait until the chosen model has added its flags.
    parser = ArgumentParser(add_help=False)
    parser = Trainer.add_argparse_args(parser)
    parser.set_defaults(max_epochs=3)  # a quick demo unless --max_epochs says otherwise
    # Figure out which model to use: parse only what is known so far.
    parser.add_argument("--model_name", type=str, default="gan", choices=sorted(MODELS), help="gan or mnist")
    temp_args, _ = parser.parse_known_args(argv)
    # Let the model add what it wants.
    parser = MODELS[temp_args.model_name].add_model_specific_args(parser)
    return ArgumentParser(parents=[parser], description=__doc__.splitlines()[0])


if __name__ == "__main__":
    cli_args = build_parser().parse_args()
    main(cli_args)
    print(f"trained {cli_args.model_name}")
