"""Checkpoint files: atomic writes, safe loading, clear errors for bad files, load_from_checkpoint."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from engine import Callback, Trainer
from plugins import ModelCheckpoint
from plugins.checkpoint_io import CheckpointError, atomic_save
from tests.models import ModernModel

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _trained(tmp_path, **flags):
    trainer = Trainer(max_epochs=1, **QUIET, **flags)
    model = ModernModel(lr=0.1)
    trainer.fit(model)
    return trainer, model


# ---------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------


def test_a_failed_write_leaves_the_previous_file_intact_and_no_temporary(tmp_path, monkeypatch):
    trainer, _ = _trained(tmp_path, checkpoint_callback=False)
    path = str(tmp_path / "model.ckpt")
    trainer.save_checkpoint(path)
    before = open(path, "rb").read()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint(path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["model.ckpt"]  # the temporary file was removed
    assert torch.load(path, weights_only=True)["global_step"] == 8


def test_a_process_killed_during_a_save_leaves_the_previous_file_intact(tmp_path):
    """A real SIGKILL after the new file is written but before it is renamed into place."""
    path = str(tmp_path / "model.ckpt")
    atomic_save({"state_dict": {"w": torch.zeros(3)}, "version": 1}, path)
    child = textwrap.dedent(f"""
        import os, signal, torch
        from plugins.checkpoint_io import atomic_save
        os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
        atomic_save({{"state_dict": {{"w": torch.ones(3)}}, "version": 2}}, {path!r})
    """)
    result = subprocess.run([sys.executable, "-c", child], env=dict(os.environ, PYTHONPATH=REPO),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert torch.load(path, weights_only=True)["version"] == 1
    leftovers = [f for f in os.listdir(tmp_path) if f != "model.ckpt"]
    assert leftovers and all(f.startswith(".model.ckpt.") and f.endswith(".tmp") for f in leftovers)


def test_a_checkpoint_gets_the_permissions_torch_save_gives(tmp_path):
    """0o666 less the umask, like any file torch.save creates (a temporary file's 0o600 made
    checkpoints unreadable to the rest of a group sharing the run directory)."""
    previous = os.umask(0o022)
    try:
        atomic_save({"w": torch.zeros(1)}, str(tmp_path / "ours.ckpt"))
        torch.save({"w": torch.zeros(1)}, str(tmp_path / "torch.pt"))
        os.umask(0o002)
        atomic_save({"w": torch.zeros(1)}, str(tmp_path / "group.ckpt"))
    finally:
        os.umask(previous)
    mode = {name: os.stat(tmp_path / name).st_mode & 0o777 for name in ("ours.ckpt", "torch.pt", "group.ckpt")}
    assert mode == {"ours.ckpt": 0o644, "torch.pt": 0o644, "group.ckpt": 0o664}


def test_a_temporary_name_left_by_a_killed_process_is_not_reused(tmp_path):
    from plugins import checkpoint_io

    number = next(checkpoint_io._temporary_numbers) + 1
    stale = tmp_path / f".model.ckpt.{os.getpid()}.{number}.tmp"
    stale.write_bytes(b"half a checkpoint")
    atomic_save({"version": 2}, str(tmp_path / "model.ckpt"))
    assert torch.load(tmp_path / "model.ckpt", weights_only=True) == {"version": 2}
    assert stale.read_bytes() == b"half a checkpoint"  # not opened, not truncated
    assert sorted(os.listdir(tmp_path)) == sorted(["model.ckpt", stale.name])


def test_top_k_never_deletes_the_only_good_file_when_a_save_fails(tmp_path, monkeypatch):
    class Failing(ModelCheckpoint):
        fail = False

        def _write(self, trainer, path, weights_only):
            if self.fail:
                raise OSError(28, "No space left on device")
            super()._write(trainer, path, weights_only)

    class Improving(ModernModel):
        def on_train_epoch_end(self):
            self.log("score", 10.0 - self.current_epoch)

    cb = Failing(dirpath=str(tmp_path), monitor="score", save_top_k=1)

    class BreakDisk(Callback):  # make epoch 2's save fail
        def on_train_epoch_start(self, trainer, pl_module):
            cb.fail = trainer.current_epoch == 1

    trainer = Trainer(max_epochs=2, callbacks=[BreakDisk(), cb], **QUIET)
    with pytest.raises(OSError, match="No space"):
        trainer.fit(Improving())
    assert os.listdir(tmp_path) == ["epoch=0-step=8.ckpt"]
    assert cb.best_model_path == str(tmp_path / "epoch=0-step=8.ckpt") and cb.best_k_models == {cb.best_model_path: 10.0}
    assert torch.load(cb.best_model_path, weights_only=True)["global_step"] == 8


# ---- a full disk, a file-size limit: the error names the file and why -------------------------

# A child process trains with a ModelCheckpoint keeping every epoch's file in DIR; each file
# is about 640 kB (a 400x400 layer), so that one fits in a 1 MB filesystem and two do not.
_FILLING_RUN = textwrap.dedent("""
    import json, os, resource, signal, sys, torch
    from engine import Callback, Trainer
    from plugins import ModelCheckpoint
    from tests.models import ModernModel

    directory, limit = sys.argv[1], int(sys.argv[2])

    class Big(ModernModel):
        def __init__(self):
            super().__init__(n_train=64)
            self.big = torch.nn.Linear(400, 400)

    class LimitAfterFirstSave(Callback):  # a file-size limit below one file, from epoch 1 on
        def on_train_epoch_start(self, trainer, pl_module):
            if limit and trainer.current_epoch == 1:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    checkpoint = ModelCheckpoint(dirpath=directory, monitor=None, save_top_k=-1)
    trainer = Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[LimitAfterFirstSave(), checkpoint])
    report = {}
    try:
        trainer.fit(Big())
    except Exception as exc:
        report = {"type": type(exc).__name__, "message": str(exc), "errno": getattr(exc, "errno", None),
                  "oserror": isinstance(exc, OSError)}
    report["files"] = sorted(os.listdir(directory))
    report["steps"] = {f: torch.load(os.path.join(directory, f), weights_only=True)["global_step"]
                       for f in report["files"]}
    print("REPORT " + json.dumps(report))
""")


def _run_filling(command, directory, limit=0):
    proc = subprocess.run([*command, sys.executable, "-c", _FILLING_RUN, str(directory), str(limit)],
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    import json

    return json.loads(lines[-1][len("REPORT "):])


def _private_tmpfs_command(directory, size="1m"):
    """A command prefix running its command with a small tmpfs at ``directory``, in a mount namespace of
    its own (no root needed where user namespaces are allowed; it vanishes with the process)."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here to make a small filesystem")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user and mount namespaces are not allowed here: {probe.stderr.decode().strip()}")
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"', str(directory)]


def test_a_full_disk_during_a_checkpoint_names_the_file_and_keeps_the_previous_one(tmp_path):
    directory = tmp_path / "small"
    directory.mkdir()
    report = _run_filling(_private_tmpfs_command(directory), directory)
    assert report["type"] == "CheckpointSaveError" and report["oserror"] and report["errno"] == 28
    message = report["message"]
    assert message.startswith(f"Cannot write checkpoint '{directory}/epoch=1-step=4.ckpt': the disk is full "
                              "([Errno 28] No space left on device)."), message
    assert "unexpected pos" not in message and "enforce fail" not in message
    assert "No partial file is left" in message and "save elsewhere" in message
    # epoch 0's checkpoint is intact, and the failed save left no temporary file behind
    assert report["files"] == ["epoch=0-step=2.ckpt"] and report["steps"] == {"epoch=0-step=2.ckpt": 2}


def test_a_file_size_limit_during_a_checkpoint_says_so(tmp_path):
    report = _run_filling([], tmp_path, limit=100_000)
    assert report["type"] == "CheckpointSaveError" and report["errno"] == 27
    assert report["message"].startswith(f"Cannot write checkpoint '{tmp_path}/epoch=1-step=4.ckpt': the file is "
                                        "larger than this process may write"), report["message"]
    assert "([Errno 27] File too large)" in report["message"] and "raise the limit" in report["message"]
    assert report["files"] == ["epoch=0-step=2.ckpt"] and report["steps"] == {"epoch=0-step=2.ckpt": 2}


# ---- temporary files of killed saves ----------------------------------------------------------

# A child that stops in the middle of a save (its file written, not yet renamed) and waits there.
_SAVING_CHILD = textwrap.dedent("""
    import os, sys, torch
    from plugins.checkpoint_io import atomic_save
    fsync = os.fsync

    def stop_here(fd):
        os.fsync = fsync  # once: the directory's fsync after the rename goes through
        fsync(fd)
        print("WRITING", flush=True)
        sys.stdin.readline()  # until the test lets go (or kills it)

    os.fsync = stop_here
    atomic_save({"state_dict": {"w": torch.ones(1000)}}, sys.argv[1])
""")


def _start_saving_child(path):
    child = subprocess.Popen([sys.executable, "-c", _SAVING_CHILD, str(path)], env=dict(os.environ, PYTHONPATH=REPO),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "WRITING"
    return child


def _temporaries(directory):
    return sorted(f for f in os.listdir(directory) if f.endswith(".tmp"))


def test_the_next_save_removes_the_temporary_file_of_a_killed_save_but_not_a_live_one(tmp_path):
    path = tmp_path / "model.ckpt"
    live, doomed = _start_saving_child(path), _start_saving_child(path)
    try:
        assert len(_temporaries(tmp_path)) == 2
        doomed.kill()
        doomed.wait()  # gone (and reaped): its temporary file is stale now
        doomed_file = [f for f in _temporaries(tmp_path) if f".{doomed.pid}." in f]
        assert doomed_file
        atomic_save({"state_dict": {}, "version": 1}, str(tmp_path / "other.ckpt"))  # any save in the directory
        # the killed save's file is gone; the one a live process is writing is untouched
        assert [f".{live.pid}." in f for f in _temporaries(tmp_path)] == [True]
        live.stdin.write("\n")
        live.stdin.flush()
        assert live.wait(timeout=60) == 0
    finally:
        for child in (live, doomed):
            if child.poll() is None:
                child.kill()
                child.wait()
    assert _temporaries(tmp_path) == []
    assert torch.load(path, weights_only=True)["state_dict"]["w"].shape == (1000,)


def test_temporary_files_of_other_machines_and_of_this_process_are_kept(tmp_path):
    from plugins import checkpoint_io

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    names = [f".model.ckpt.{pid}.0@another-host.tmp",      # its writer may be alive on that machine
             f".model.ckpt.{os.getpid()}.99@{checkpoint_io._HOST}.tmp",  # this process's own
             f".model.ckpt.{pid}.0@{checkpoint_io._HOST}.tmp",   # stale: removed
             f".model.ckpt.{pid}.1.tmp"]                          # stale, written before names had a host
    for name in names:
        (tmp_path / name).write_bytes(b"half a checkpoint")
    removed = checkpoint_io.remove_stale_temporaries(str(tmp_path))
    assert sorted(removed) == sorted(str(tmp_path / n) for n in names[2:])
    assert _temporaries(tmp_path) == sorted(names[:2])


# ---------------------------------------------------------------------------------------
# safe loading
# ---------------------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_checkpoint_with_code_is_refused(tmp_path):
    trainer, _ = _trained(tmp_path, checkpoint_callback=False)
    path = str(tmp_path / "evil.ckpt")
    checkpoint = trainer.hooks.save_checkpoint  # build a real checkpoint, then poison it
    checkpoint(trainer, path, False)
    data = torch.load(path, weights_only=True)
    data["hyper_parameters"]["payload"] = _RunsCode()
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt.*refused.*weights_only"):
        ModernModel.load_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        Trainer(max_epochs=2, **QUIET).fit(ModernModel(), ckpt_path=path)
    assert not os.path.exists("pwned.txt")


def test_load_from_checkpoint_rebuilds_from_hyperparameters(tmp_path):
    trainer, model = _trained(tmp_path, checkpoint_callback=False)
    trainer.save_checkpoint("m.ckpt")
    loaded = ModernModel.load_from_checkpoint("m.ckpt")
    assert loaded.hparams.lr == 0.1 and not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    overridden = ModernModel.load_from_checkpoint("m.ckpt", map_location="cpu", lr=0.5)
    assert overridden.hparams.lr == 0.5 and overridden.layer.weight.device.type == "cpu"


class SeedHparams(ModernModel):
    """Seed era: ``__init__(self, hparams)`` with ``self.hparams = hparams`` (a Namespace)."""

    def __init__(self, hparams, extra_layer: bool = False):
        super().__init__()
        self.hparams = hparams
        self.layer = torch.nn.Linear(8, hparams.classes)
        self.extra_layer = extra_layer

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def test_load_from_checkpoint_rebuilds_a_seed_era_hparams_namespace(tmp_path):
    from argparse import Namespace

    model = SeedHparams(Namespace(lr=0.1, classes=2, n_train=64, batch_size=32))
    trainer = Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)
    trainer.fit(model)
    path = str(tmp_path / "seed.ckpt")
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert (saved["hparams_name"], saved["hparams_type"]) == ("hparams", "Namespace")
    loaded = SeedHparams.load_from_checkpoint(path)
    assert dict(loaded.hparams) == {"lr": 0.1, "classes": 2, "n_train": 64, "batch_size": 32}
    assert torch.equal(loaded.layer.weight, model.layer.weight)
    # An override of a hyperparameter goes into the namespace; one of an argument, to the argument.
    overridden = SeedHparams.load_from_checkpoint(path, lr=0.5, extra_layer=True)
    assert overridden.hparams.lr == 0.5 and overridden.extra_layer is True


def test_load_from_checkpoint_strict_and_mismatch_names_keys(tmp_path):
    trainer, _ = _trained(tmp_path, checkpoint_callback=False)
    trainer.save_checkpoint("m.ckpt")

    class Bigger(ModernModel):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match=r"m\.ckpt.*missing in the checkpoint: extra\.weight, extra\.bias"):
        Bigger.load_from_checkpoint("m.ckpt")
    assert isinstance(Bigger.load_from_checkpoint("m.ckpt", strict=False), Bigger)


# ---------------------------------------------------------------------------------------
# bad files
# ---------------------------------------------------------------------------------------


def test_missing_truncated_and_foreign_files_are_named(tmp_path):
    trainer, _ = _trained(tmp_path, checkpoint_callback=False)
    good = str(tmp_path / "good.ckpt")
    trainer.save_checkpoint(good)
    blob = open(good, "rb").read()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(blob[: len(blob) // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("these are my notes, not a checkpoint")
    foreign = str(tmp_path / "foreign.ckpt")
    torch.save({"weights": torch.zeros(2)}, foreign)
    cases = [(str(tmp_path / "nope.ckpt"), "does not exist"), (str(truncated), "truncated or corrupt"),
             (str(text), "not a torch checkpoint|truncated or corrupt"), (foreign, r"not a hookloop checkpoint.*weights")]
    for path, problem in cases:
        with pytest.raises(CheckpointError, match=problem) as info:
            Trainer(max_epochs=2, **QUIET).fit(ModernModel(), ckpt_path=path)
        assert path in str(info.value)


def test_random_bytes_are_called_corrupt_and_real_pickles_with_code_are_refused(tmp_path):
    import pickle
    import random

    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(random.Random(0).randbytes(4096))
    plain = tmp_path / "plain.ckpt"
    plain.write_bytes(pickle.dumps({"state_dict": {"w": [1.0, 2.0]}}, protocol=4))
    code = tmp_path / "code.ckpt"  # a real pickle importing os.system, that torch does not name itself
    code.write_bytes(pickle.dumps({"state_dict": {}, "payload": _RunsCode()}, protocol=4))
    with pytest.raises(CheckpointError) as info:
        Trainer(max_epochs=2, **QUIET).fit(ModernModel(), ckpt_path=str(noise))
    message = str(info.value)
    assert message.startswith(f"Checkpoint {str(noise)!r} (4096 bytes) is corrupt or not a checkpoint"), message
    assert "could run code" not in message and "refused" not in message
    with pytest.raises(CheckpointError, match=r"plain\.ckpt.*is not a torch checkpoint: it is a plain pickle"):
        ModernModel.load_from_checkpoint(str(plain))
    with pytest.raises(CheckpointError, match=r"code\.ckpt' was refused: .*could run code when loaded \(posix\.system\)"):
        ModernModel.load_from_checkpoint(str(code))
    assert not os.path.exists("pwned.txt")


def test_a_checkpoint_of_a_newer_hookloop_loads_with_a_warning_naming_both_versions(tmp_path):
    import engine

    trainer, model = _trained(tmp_path, checkpoint_callback=False)
    trainer.save_checkpoint("new.ckpt")
    data = torch.load("new.ckpt", weights_only=True)
    data["hookloop_version"] = "99.1.0"
    torch.save(data, "new.ckpt")
    expected = rf"'new\.ckpt' was saved by hookloop 99\.1\.0, newer than this hookloop {re.escape(engine.__version__)}"
    with pytest.warns(UserWarning, match=expected):
        loaded = ModernModel.load_from_checkpoint("new.ckpt")
    assert torch.equal(loaded.layer.weight, model.layer.weight)
    with pytest.warns(UserWarning, match=expected):
        resumed = Trainer(max_epochs=2, **QUIET)
        resumed.fit(ModernModel(), ckpt_path="new.ckpt")
    assert resumed.global_step == 16
    import warnings

    data["hookloop_version"] = engine.__version__
    torch.save(data, "same.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ModernModel.load_from_checkpoint("same.ckpt")


def test_resuming_a_checkpoint_of_another_model_names_the_keys(tmp_path):
    trainer, _ = _trained(tmp_path, checkpoint_callback=False)
    trainer.save_checkpoint("m.ckpt")

    class Other(ModernModel):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(8, 3)
            self.head = torch.nn.Linear(3, 2)

    with pytest.raises(CheckpointError) as info:
        Trainer(max_epochs=2, **QUIET).fit(Other(), ckpt_path="m.ckpt")
    message = str(info.value)
    assert "m.ckpt" in message and "head.weight" in message
    assert "layer.weight (checkpoint (2, 8), model (3, 8))" in message



def test_state_that_would_not_load_safely_is_refused_before_writing(tmp_path):
    class Careless(Callback):
        def state_dict(self):
            return {"seen": {1, 2}}  # a set: torch.load(weights_only=True) refuses it

        def load_state_dict(self, state_dict):
            pass

    trainer, _ = _trained(tmp_path, checkpoint_callback=False)
    trainer.save_checkpoint("good.ckpt")
    before = open("good.ckpt", "rb").read()
    trainer.registry.add(Careless(), "careless", "callback")
    with pytest.raises(CheckpointError, match=r"checkpoint\['callbacks'\]\['.*Careless'\]\['seen'\]: builtins.set"):
        trainer.save_checkpoint("good.ckpt")
    assert open("good.ckpt", "rb").read() == before
