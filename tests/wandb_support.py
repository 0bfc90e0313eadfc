"""Reading back what a wandb run wrote offline: the run's ``.wandb`` file, record by record.

wandb keeps an offline run in ``<dir>/wandb/offline-run-*/run-<id>.wandb``: a LevelDB-style log
(a 7-byte file header ``:W&B`` + magic + version, then 32 KiB blocks of records, each with a
7-byte header: checksum, length, kind) whose records are wandb's own ``Record`` protobufs.
Only the records are read here (``wandb.proto``); no server and no network are involved.
"""
from __future__ import annotations

import glob
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def finish_and_read(save_dir: str = ".") -> "OfflineRun":
    """Finish the current run, wait until wandb's service has written everything, and read the run back.

    ``wandb.finish()`` returns once the run's last record is handed to the service, which writes
    the file on its own; ``wandb.teardown()`` stops the service, which closes the file first.
    """
    import wandb

    wandb.finish()
    wandb.teardown()
    return read_offline_run(save_dir)


def _records(path: str) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        data = fh.read()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    pos, pieces = _HEADER, b""
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # a block's tail too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0:  # zero padding up to the block's end
            pos += room
            continue
        body = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (_FULL, _FIRST):
            pieces = body
        else:
            pieces += body
        if kind in (_FULL, _LAST):
            yield pieces


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What one offline run holds."""

    directory: str
    run_id: str = ""
    project: str = ""
    display_name: str = ""
    config: Dict[str, Any] = field(default_factory=dict)
    history: List[Dict[str, Any]] = field(default_factory=list)
    artifacts: List[Any] = field(default_factory=list)
    finished: bool = False

    @property
    def files(self) -> str:
        """The run's ``files/`` directory (media, requirements...)."""
        return os.path.join(self.directory, "files")

    def values(self, key: str, step_key: str = "trainer/global_step") -> List[tuple]:
        """``(step, value)`` of every history row holding ``key``."""
        return [(row.get(step_key), row[key]) for row in self.history if key in row]


def read_offline_run(save_dir: str) -> OfflineRun:
    """The single offline run under ``save_dir/wandb/`` (the run must be finished for all of it to be there)."""
    from wandb.proto import wandb_internal_pb2

    dirs = sorted({os.path.realpath(d) for d in glob.glob(os.path.join(save_dir, "wandb", "offline-run-*"))})
    assert len(dirs) == 1, f"expected one offline run under {save_dir}/wandb, found {dirs}"
    files = glob.glob(os.path.join(dirs[0], "run-*.wandb"))
    assert len(files) == 1, files
    run = OfflineRun(dirs[0])
    for raw in _records(files[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.project, run.display_name = record.run.run_id, record.run.project, record.run.display_name
            run.config.update({_item_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run.config.update({_item_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run.history.append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
        elif kind == "exit":
            run.finished = True
    return run
