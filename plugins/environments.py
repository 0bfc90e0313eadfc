"""Cluster environments: where a process learns its rank, the world size and the main address.

Three sources, checked in this order by :func:`detect_environment`:

* :class:`TorchElasticEnvironment` — ``torchrun`` (or hookloop's own launcher, which sets the
  same variables): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``GROUP_RANK``, ``MASTER_ADDR/PORT``.
* :class:`SLURMEnvironment` — ``srun`` tasks: ``SLURM_NTASKS``, ``SLURM_PROCID``, ``SLURM_LOCALID``,
  ``SLURM_NODEID``; the first host of ``SLURM_JOB_NODELIST`` is the main address.
* :class:`LocalEnvironment` — a plain ``python script.py``: this process is global rank 0 of
  node ``NODE_RANK`` (default 0); the distributed plugin starts the other local ranks.
"""
from __future__ import annotations

import os
import re
import socket
from typing import List, Mapping, Optional

#: Set by hookloop's launcher in the processes it starts (they must not launch again).
LAUNCHED_ENV = "HOOKLOOP_LAUNCHED"


class ClusterEnvironment:
    """Ranks and rendezvous address of this process. Subclasses read them from the environment."""

    #: True when someone else (torchrun, srun) started every process of the job.
    creates_processes_externally: bool = False

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        self.env = os.environ if env is None else env

    def world_size(self) -> int:
        """Number of processes in the whole job."""
        raise NotImplementedError

    def global_rank(self) -> int:
        """This process's rank in the whole job."""
        raise NotImplementedError

    def local_rank(self) -> int:
        """This process's rank on its node."""
        raise NotImplementedError

    def node_rank(self) -> int:
        """Index of this process's node."""
        raise NotImplementedError

    @property
    def main_address(self) -> str:
        """Host of global rank 0 (the rendezvous store)."""
        return self.env.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        """Port of the rendezvous store."""
        return int(self.env.get("MASTER_PORT", "0") or 0)

    def describe(self) -> str:
        """One line for messages: the environment's name and this process's ranks."""
        return (f"{type(self).__name__}(global_rank={self.global_rank()}, local_rank={self.local_rank()}, "
                f"node_rank={self.node_rank()}, world_size={self.world_size()})")


class TorchElasticEnvironment(ClusterEnvironment):
    """Processes started by ``torchrun`` / ``python -m torch.distributed.run`` (or by hookloop's launcher)."""

    creates_processes_externally = True

    @staticmethod
    def detect(env: Mapping[str, str]) -> bool:
        """True when torchrun's variables are present."""
        return all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))

    @property
    def launched_by_hookloop(self) -> bool:
        """True for processes hookloop's own ``ddp`` launcher started."""
        return self.env.get(LAUNCHED_ENV) == "1"

    def world_size(self) -> int:
        return int(self.env["WORLD_SIZE"])

    def global_rank(self) -> int:
        return int(self.env["RANK"])

    def local_rank(self) -> int:
        return int(self.env["LOCAL_RANK"])

    def node_rank(self) -> int:
        return int(self.env.get("GROUP_RANK", self.env.get("NODE_RANK", "0")))


class SLURMEnvironment(ClusterEnvironment):
    """Tasks started by SLURM's ``srun`` (one task per process)."""

    creates_processes_externally = True

    @staticmethod
    def detect(env: Mapping[str, str]) -> bool:
        """True inside an ``srun`` task of a batch job (not an interactive shell allocation)."""
        if "SLURM_NTASKS" not in env or "SLURM_PROCID" not in env:
            return False
        return env.get("SLURM_JOB_NAME") not in ("bash", "interactive")

    def world_size(self) -> int:
        return int(self.env["SLURM_NTASKS"])

    def global_rank(self) -> int:
        return int(self.env["SLURM_PROCID"])

    def local_rank(self) -> int:
        return int(self.env.get("SLURM_LOCALID", "0"))

    def node_rank(self) -> int:
        return int(self.env.get("SLURM_NODEID", "0"))

    @property
    def main_address(self) -> str:
        if "MASTER_ADDR" in self.env:
            return self.env["MASTER_ADDR"]
        nodelist = self.env.get("SLURM_JOB_NODELIST") or self.env.get("SLURM_NODELIST") or "127.0.0.1"
        return first_host(nodelist)

    @property
    def main_port(self) -> int:
        if self.env.get("MASTER_PORT"):
            return int(self.env["MASTER_PORT"])
        # Every task of a job computes the same port from the job id (as Lightning does).
        job_id = self.env.get("SLURM_JOB_ID", "0")
        return 10000 + int(job_id[-4:] if job_id.isdigit() else "0") % 10000


class LocalEnvironment(ClusterEnvironment):
    """A plain ``python script.py``: rank 0 of node ``NODE_RANK``; other ranks are started by hookloop."""

    def __init__(self, env: Optional[Mapping[str, str]] = None, processes_per_node: int = 1,
                 num_nodes: int = 1) -> None:
        super().__init__(env)
        self.processes_per_node = processes_per_node
        self.num_nodes = num_nodes

    def world_size(self) -> int:
        return self.processes_per_node * self.num_nodes

    def global_rank(self) -> int:
        return self.node_rank() * self.processes_per_node

    def local_rank(self) -> int:
        return 0

    def node_rank(self) -> int:
        return int(self.env.get("NODE_RANK", "0"))


def detect_environment(processes_per_node: int = 1, num_nodes: int = 1,
                       env: Optional[Mapping[str, str]] = None) -> ClusterEnvironment:
    """The environment this process runs in: torchrun's, SLURM's, or a local one."""
    env = os.environ if env is None else env
    if TorchElasticEnvironment.detect(env):
        return TorchElasticEnvironment(env)
    if SLURMEnvironment.detect(env):
        return SLURMEnvironment(env)
    return LocalEnvironment(env, processes_per_node, num_nodes)


def external_launcher_detected(env: Optional[Mapping[str, str]] = None) -> bool:
    """True when torchrun or SLURM started this process as one of several."""
    env = os.environ if env is None else env
    if TorchElasticEnvironment.detect(env):
        return int(env.get("WORLD_SIZE", "1")) > 1
    if SLURMEnvironment.detect(env):
        return int(env.get("SLURM_NTASKS", "1")) > 1
    return False


def expand_nodelist(nodelist: str) -> List[str]:
    """Host names of a SLURM node list: ``'node[01-03,07],gpu5'`` -> ``['node01', ..., 'gpu5']``."""
    hosts: List[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]*)\])?", nodelist):
        prefix, ranges = match.group(1), match.group(2)
        if ranges is None:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                hosts.extend(f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1))
            else:
                hosts.append(prefix + part)
    return hosts


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list (where global rank 0 runs)."""
    hosts = expand_nodelist(nodelist.strip())
    return hosts[0] if hosts else "127.0.0.1"


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
