"""Trainer.add_argparse_args / from_argparse_args / parse_argparser / default_attributes (the seed's workflow)."""
from __future__ import annotations

import argparse
import inspect
import sys
from typing import List, Literal, Optional

import pytest

from engine import Callback, LightningModule, Trainer
from engine.argparse_support import add_signature_args, docstring_args
from tests.models import SeedModel

# Arguments that take Python objects: no command line can write them.
NOT_FROM_CLI = {"callbacks", "plugins"}


def trainer_parser(**kwargs) -> argparse.ArgumentParser:
    return Trainer.add_argparse_args(argparse.ArgumentParser(prog="prog", **kwargs))


def parse(*argv: str) -> argparse.Namespace:
    return trainer_parser().parse_args(list(argv))


def flags_of(parser: argparse.ArgumentParser) -> dict:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def quiet(**kwargs):
    """Trainer flags for a fast, silent run."""
    return dict(logger=False, checkpoint_callback=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0, **kwargs)


# ---- one flag per argument ------------------------------------------------------------------


def test_one_flag_per_trainer_argument():
    names = [n for n, p in inspect.signature(Trainer.__init__).parameters.items()
             if n != "self" and p.kind is not p.VAR_KEYWORD]  # **unknown only names typos
    flags = flags_of(trainer_parser())
    assert set(flags) == set(names) - NOT_FROM_CLI
    for name in flags:
        assert flags[name].option_strings == [f"--{name}"]
    # With nothing on the command line every value is the Trainer's own default.
    assert vars(parse()) == {k: v for k, v in Trainer.default_attributes().items() if k not in NOT_FROM_CLI}


@pytest.mark.parametrize("argv, name, expected", [
    (["--max_epochs", "7"], "max_epochs", 7),
    (["--max_epochs", "none"], "max_epochs", None),          # Optional[int]
    (["--gradient_clip_val", "0.5"], "gradient_clip_val", 0.5),  # Optional[float]
    (["--gradient_clip_val", "1"], "gradient_clip_val", 1.0),
    (["--accelerator", "cpu"], "accelerator", "cpu"),         # str
    (["--weights_summary", "full"], "weights_summary", "full"),
    (["--weights_summary", "None"], "weights_summary", None),  # Optional[str]: the seed's way to turn it off
    (["--default_root_dir", "out/runs"], "default_root_dir", "out/runs"),
    (["--sync_batchnorm"], "sync_batchnorm", True),           # bool
    (["--sync_batchnorm", "True"], "sync_batchnorm", True),
    (["--replace_sampler_ddp", "false"], "replace_sampler_ddp", False),
    (["--replace_sampler_ddp", "no"], "replace_sampler_ddp", False),
    (["--enable_progress_bar", "0"], "enable_progress_bar", False),  # Optional[bool]
    (["--fast_dev_run"], "fast_dev_run", True),               # Union[int, bool]
    (["--fast_dev_run", "True"], "fast_dev_run", True),
    (["--fast_dev_run", "false"], "fast_dev_run", False),
    (["--fast_dev_run", "3"], "fast_dev_run", 3),
    (["--gpus", "2"], "gpus", 2),                             # a count
    (["--gpus", "1, 2"], "gpus", [1, 2]),                     # ids
    (["--gpus", "1,2"], "gpus", [1, 2]),
    (["--gpus", "0,"], "gpus", [0]),                          # one id, not a count of 0
    (["--gpus", "-1"], "gpus", -1),                           # all
    (["--devices", "auto"], "devices", "auto"),
    (["--devices", "4"], "devices", 4),
    (["--limit_train_batches", "0.5"], "limit_train_batches", 0.5),  # a fraction
    (["--limit_train_batches", "10"], "limit_train_batches", 10),    # a count
    (["--limit_val_batches", "1.0"], "limit_val_batches", 1.0),
    (["--val_check_interval", "0.25"], "val_check_interval", 0.25),
    (["--val_check_interval", "100"], "val_check_interval", 100),
    (["--overfit_batches", "4"], "overfit_batches", 4),
    (["--precision", "16"], "precision", 16),
    (["--precision", "bf16-mixed"], "precision", "bf16-mixed"),
    (["--precision", "64"], "precision", 64),
    (["--accumulate_grad_batches", "4"], "accumulate_grad_batches", 4),  # Union[int, Dict]: the int
    (["--disable_plugins", "progress_bar,model_summary"], "disable_plugins", ["progress_bar", "model_summary"]),
    (["--logger", "false"], "logger", False),                 # Any = True: a bool from the command line
    (["--checkpoint_callback", "false"], "checkpoint_callback", False),  # Any = None: a value
    (["--profiler", "simple"], "profiler", "simple"),
    (["--max_time", "00:00:01:00"], "max_time", "00:00:01:00"),
    (["--max_time", "90"], "max_time", 90),
])
def test_flag_values_are_typed_from_the_signature(argv, name, expected):
    value = getattr(parse(*argv), name)
    assert value == expected
    assert type(value) is type(expected)  # 10 stays an int (a count), 0.5 a float (a fraction)


@pytest.mark.parametrize("argv, message", [
    (["--max_epochs", "two"], "--max_epochs: expected int|none; got 'two'"),
    (["--sync_batchnorm", "maybe"], "--sync_batchnorm"),
    (["--fast_dev_run", "maybe"], "--fast_dev_run"),
    (["--limit_train_batches", "half"], "--limit_train_batches"),
    (["--gpus", "1,x"], "--gpus"),
    (["--callbacks", "x"], "unrecognized arguments: --callbacks x"),
])
def test_bad_values_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: prog")
    assert message in err


def test_typed_flags_build_a_working_trainer():
    args = parse("--max_epochs", "2", "--limit_train_batches", "3", "--limit_val_batches", "0.5",
                 "--val_check_interval", "0.5", "--precision", "32", "--logger", "false", "--checkpoint_callback",
                 "false", "--enable_progress_bar", "false", "--enable_model_summary", "false")
    trainer = Trainer.from_argparse_args(args)
    trainer.fit(SeedModel(n_train=320, n_val=64))
    assert (trainer.state.epoch, trainer.global_step) == (2, 6)  # 2 epochs of 3 batches (an int)
    assert trainer.limit_val_batches == 0.5 and isinstance(trainer.limit_val_batches, float)


# ---- help from the docstring ------------------------------------------------------------------


def _squash(text: str) -> str:
    return " ".join(text.replace("``", "").split())


def test_help_text_comes_from_the_trainer_docstring(capsys):
    docs = docstring_args(Trainer)
    flags = flags_of(trainer_parser())
    for name, action in flags.items():
        assert docs.get(name), f"Trainer's docstring has no Args entry for {name!r}"
        assert _squash(action.help).startswith(_squash(docs[name])), name
    with pytest.raises(SystemExit):
        trainer_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--limit_train_batches INT|FLOAT Batches per training epoch: a fraction (float) or a count (int). " \
           "(default: 1.0)" in out
    assert "--gpus INT|INT,INT,...|STR|NONE Seed-era: an int (how many GPUs)" in out
    assert "--fast_dev_run [BOOL|INT]" in out


def test_subclass_flags_and_docs_follow_kwargs_up_the_hierarchy():
    class MyTrainer(Trainer):
        """A trainer with one more flag.

        Args:
            warmup: Epochs of learning-rate warm-up,
                counted from zero.
        """

        def __init__(self, warmup: int = 0, **kwargs):
            super().__init__(**kwargs)
            self.warmup = warmup

    parser = MyTrainer.add_argparse_args(argparse.ArgumentParser())
    flags = flags_of(parser)
    assert {"warmup", "max_epochs", "gpus"} <= set(flags)
    assert flags["warmup"].help == "Epochs of learning-rate warm-up, counted from zero. (default: 0)"
    trainer = MyTrainer.from_argparse_args(parser.parse_args(["--warmup", "2", "--max_epochs", "5"]))
    assert (trainer.warmup, trainer.max_epochs) == (2, 5)
    assert MyTrainer.default_attributes()["warmup"] == 0
    assert MyTrainer.default_attributes()["max_epochs"] is None


# ---- parsers without help, parents=[...] --------------------------------------------------------


class LitModel(LightningModule):
    """The seed's pattern: the model adds its own flags to the parser it is given."""

    def __init__(self, encoder_layers: int = 12, **kwargs):
        super().__init__()
        self.encoder_layers = encoder_layers

    @staticmethod
    def add_model_specific_args(parent_parser):
        parser = argparse.ArgumentParser(parents=[parent_parser], add_help=False)
        parser.add_argument("--encoder_layers", type=int, default=12)
        parser.add_argument("--data_root", type=str, default="data")
        return parser


def test_works_with_add_help_false_and_parents():
    # The seed: program args, model args, trainer args, on a parser made with add_help=False.
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--conda_env", type=str, default="some_name")
    parser = LitModel.add_model_specific_args(parser)
    parser = Trainer.add_argparse_args(parser)
    args = parser.parse_args(["--encoder_layers", "3", "--max_epochs", "4", "--fast_dev_run", "--gpus", "1, 2"])
    assert (args.conda_env, args.encoder_layers, args.max_epochs, args.fast_dev_run, args.gpus) == \
        ("some_name", 3, 4, True, [1, 2])
    # ...and that parser (Trainer flags included) can itself be a parent, gaining -h there.
    child = argparse.ArgumentParser(prog="child", parents=[parser])
    args = child.parse_args(["--limit_train_batches", "0.25", "--data_root", "/tmp/x"])
    assert (args.limit_train_batches, args.data_root) == (0.25, "/tmp/x")
    assert "--limit_train_batches" in child.format_help() and "Trainer" in child.format_help()


def test_trainer_flags_first_then_model_parents_with_help(capsys):
    parser = Trainer.add_argparse_args(argparse.ArgumentParser(prog="seed"))
    parser = LitModel.add_model_specific_args(parser)  # a new parser inheriting -h and every flag
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["-h"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--encoder_layers" in out and "--max_epochs" in out and "--precision" in out


def test_use_argument_group_false_returns_a_new_parser():
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--batch_size", type=int, default=32)
    parser = Trainer.add_argparse_args(parent, use_argument_group=False)
    assert parser is not parent and "--max_epochs" not in parent.format_help()
    assert parser.parse_args(["--batch_size", "8", "--max_steps", "3"]).max_steps == 3


def test_a_flag_the_parser_already_has_is_kept():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_epochs", type=int, default=3, help="this program's default")
    Trainer.add_argparse_args(parser)
    Trainer.add_argparse_args(parser)  # twice is harmless
    assert parser.parse_args([]).max_epochs == 3
    assert parser.parse_args(["--max_steps", "9"]).max_steps == 9


# ---- from_argparse_args, parse_argparser, default_attributes ---------------------------------------


class Recorder(Callback):
    """Counts training batches."""

    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1


def test_from_argparse_args_ignores_unknown_keys_and_overrides_win():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model_name", default="gan")
    parser = LitModel.add_model_specific_args(parser)
    parser = Trainer.add_argparse_args(parser)
    args = parser.parse_args(["--max_epochs", "7", "--limit_train_batches", "2", "--encoder_layers", "3",
                              "--logger", "false", "--enable_progress_bar", "false", "--num_sanity_val_steps", "0"])
    recorder = Recorder()
    trainer = Trainer.from_argparse_args(args, max_epochs=1, checkpoint_callback=False, callbacks=[recorder])
    assert trainer.max_epochs == 1  # the override won over --max_epochs 7
    assert trainer.limit_train_batches == 2 and trainer.logger_flag is False
    assert recorder in trainer.callbacks
    assert trainer.checkpoint_callback is None
    trainer.fit(SeedModel())
    assert recorder.batches == 2
    # The Namespace is left as it was (model and program keys included).
    assert (args.model_name, args.encoder_layers, args.max_epochs) == ("gan", 3, 7)


def test_from_argparse_args_takes_a_dict():
    trainer = Trainer.from_argparse_args({"max_steps": 5, "lr": 0.1, "data_root": "x"}, **quiet())
    assert trainer.max_steps == 5


def test_from_argparse_args_passes_overrides_the_trainer_rejects():
    with pytest.raises(TypeError, match="no_such_flag"):
        Trainer.from_argparse_args(argparse.Namespace(max_epochs=1), no_such_flag=1)


def test_parse_argparser_turns_bare_bool_flags_into_true(monkeypatch):
    # A bool flag defined by hand in the seed's style (nargs='?', no const) parses to None when bare.
    parser = argparse.ArgumentParser()
    parser.add_argument("--terminate_on_nan", nargs="?", default=False, type=lambda s: s.lower() == "true")
    parser.add_argument("--max_epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=0.1)
    monkeypatch.setattr(sys, "argv", ["prog", "--terminate_on_nan", "--lr", "0.5"])
    args = Trainer.parse_argparser(parser)
    assert (args.terminate_on_nan, args.max_epochs, args.lr) == (True, None, 0.5)
    # A Namespace works too; None on an Optional (non-bool default) flag stays None.
    assert Trainer.parse_argparser(argparse.Namespace(sync_batchnorm=None, benchmark=None)) == \
        argparse.Namespace(sync_batchnorm=True, benchmark=None)


def test_parse_argparser_with_generated_flags(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--fast_dev_run", "--gpus", "-1", "--precision", "bf16-mixed"])
    args = Trainer.parse_argparser(trainer_parser())
    assert (args.fast_dev_run, args.gpus, args.precision) == (True, -1, "bf16-mixed")


def test_default_attributes_are_the_signature_defaults():
    defaults = Trainer.default_attributes()
    signature = inspect.signature(Trainer.__init__).parameters
    assert list(defaults) == [n for n, p in signature.items() if n != "self" and p.kind is not p.VAR_KEYWORD]
    assert defaults["max_epochs"] is None and defaults["log_every_n_steps"] == 50
    assert defaults["limit_train_batches"] == 1.0 and defaults["callbacks"] is None


# ---- a model's __init__ as flags (used by `python -m engine fit`) ---------------------------------


class Annotated(LightningModule):
    """A model whose flags come from its signature.

    Args:
        width: Hidden units.
        act: Activation function.
        dropout: Dropout probability; none for no dropout layer.
        layers: Layer sizes, comma-separated.
    """

    def __init__(self, width: int, act: Literal["relu", "tanh"] = "relu", dropout: Optional[float] = None,
                 layers: List[int] = (4, 4), encoder: Optional[LightningModule] = None, tag="x", use_bn=False):
        super().__init__()


def test_signature_flags_for_a_model():
    parser = argparse.ArgumentParser(prog="m")
    added = add_signature_args(parser, Annotated, title="Annotated")
    assert added == ["width", "act", "dropout", "layers", "tag", "use_bn"]  # `encoder` is an object: skipped
    args = parser.parse_args(["--width", "8", "--act", "tanh", "--dropout", "0.1", "--layers", "8,16", "--use_bn"])
    assert vars(args) == {"width": 8, "act": "tanh", "dropout": 0.1, "layers": [8, 16], "tag": "x", "use_bn": True}
    assert parser.parse_args(["--width", "1", "--dropout", "none"]).dropout is None
    help_text = " ".join(parser.format_help().split())
    assert "--width INT Hidden units. (required)" in help_text
    assert "--act {relu,tanh} Activation function. (default: 'relu')" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --width is required
    with pytest.raises(SystemExit):
        parser.parse_args(["--width", "1", "--act", "gelu"])


def test_pep604_unions_and_builtin_generics():
    class Modern(LightningModule):
        def __init__(self, depth: "int | None" = None, sizes: "list[int]" = (1,), names: "tuple[str, ...]" = ()):
            super().__init__()

    parser = argparse.ArgumentParser()
    assert add_signature_args(parser, Modern) == ["depth", "sizes", "names"]
    args = parser.parse_args(["--depth", "3", "--sizes", "2,3", "--names", "a,b"])
    assert (args.depth, args.sizes, args.names) == (3, [2, 3], ["a", "b"])
    assert parser.parse_args(["--depth", "none"]).depth is None
    assert parser.parse_args(["--sizes", "5", "--names", "a"]).sizes == [5]
    assert parser.parse_args(["--names", "a"]).names == ["a"]
