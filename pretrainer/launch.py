"""Whether this process was launched as one of several, and where they meet: read from the
launcher's environment, without importing torch (the CLI asks before any heavy import).

* `torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
* a SLURM job step (`srun`, or Hydra's submitit launcher with `tasks_per_node` > 1) sets
  SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and SLURM_JOB_NODELIST: the rendezvous address is
  the first host of the node list and the port is derived from the job id, so every task of
  the job computes the same ones without talking to the others first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pretrainer.errors import ConfigError

PORT_BASE, PORT_SPAN = 20000, 20000  # SLURM jobs pick MASTER_PORT in [20000, 40000) from their job id


def launch_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The torch.distributed variables for this process: torchrun's as they are, or derived
    from SLURM's for a multi-task job step; {} when the process runs alone."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        return {key: environ[key] for key in keys if key in environ}
    tasks = int(environ.get("SLURM_NTASKS", "1") or 1)
    if tasks <= 1 or "SLURM_PROCID" not in environ:
        return {}
    nodes = expand_nodelist(environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST", ""))
    if not nodes:
        raise ConfigError("a multi-task SLURM job step without SLURM_JOB_NODELIST: cannot find the rendezvous host")
    job_id = int(re.sub(r"\D", "", environ.get("SLURM_JOB_ID", "0")) or 0)
    return {"RANK": environ["SLURM_PROCID"], "WORLD_SIZE": str(tasks),
            "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": environ.get("MASTER_ADDR", nodes[0]),
            "MASTER_PORT": environ.get("MASTER_PORT", str(PORT_BASE + job_id % PORT_SPAN))}


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list, expanded: `gpu[01-03,07],login1` -> gpu01, gpu02, gpu03,
    gpu07, login1 (zero padding kept). Commas inside brackets do not split hosts."""
    hosts = []
    for prefix, ranges, suffix in re.findall(r"([^,\[]+)(?:\[([^\]]+)\])?([^,\[]*)", nodelist):
        if not ranges:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            width = len(first)
            for number in range(int(first), int(last or first) + 1):
                hosts.append(f"{prefix}{number:0{width}d}{suffix}")
    return hosts


def launched_distributed(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is one of several of a torchrun or SLURM launch."""
    return int(launch_environment(environ).get("WORLD_SIZE", "1")) > 1


def launch_rank(environ: Mapping[str, str] = os.environ) -> int:
    """This process's global rank as its launcher numbered it (0 when it runs alone)."""
    return int(launch_environment(environ).get("RANK", "0"))
