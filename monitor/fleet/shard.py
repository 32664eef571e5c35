"""Which targets a daemon owns: `--shard I/N`, else `DUPEWATCH_SHARD=I/N`, else (a Kubernetes StatefulSet)
`DUPEWATCH_SHARDS=N` with the ordinal taken from the pod's name (`POD_NAME`, or the hostname) suffix `-<ordinal>`.

A target belongs to shard `sha256(identity) mod N`: stable across processes, machines and Python versions
(unlike `hash()`), so daemons given the same config and N split the targets without talking to each other.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.config import ConfigError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_ORDINAL = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def owns(self, identity: str) -> bool:
        return shard_of(identity, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard(0, 1)


def shard_of(identity: str, count: int) -> int:
    """The shard (0..count-1) a target identity belongs to."""
    digest = hashlib.sha256(identity.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(spec: str, where: str) -> Shard:
    """`I/N` with 0 <= I < N; ConfigError naming `where` otherwise."""
    match = _SPEC.match(spec)
    if match is None:
        raise ConfigError(f"{where}: expected I/N (shard I of N, I from 0), got {spec!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise ConfigError(f"{where}: shard {index} of {count} does not exist (I runs from 0 to N-1), got {spec!r}")
    return Shard(index, count)


def shard_from_environment(option: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """The shard of this daemon: the option, else the environment, else the only one (0/1)."""
    env = os.environ if environ is None else environ
    if option is not None:
        return parse_shard(option, "--shard")
    if env.get("DUPEWATCH_SHARD"):
        return parse_shard(env["DUPEWATCH_SHARD"], "DUPEWATCH_SHARD")
    shards = env.get("DUPEWATCH_SHARDS")
    if not shards:
        return ALL
    if not shards.strip().isdigit() or int(shards) < 1:
        raise ConfigError(f"DUPEWATCH_SHARDS: expected the number of shards (at least 1), got {shards!r}")
    name = env.get("POD_NAME") or socket.gethostname()
    ordinal = _ORDINAL.search(name)
    source = "POD_NAME" if env.get("POD_NAME") else "the hostname"
    if ordinal is None:
        raise ConfigError(f"DUPEWATCH_SHARDS is set but {source} {name!r} does not end in -<ordinal> "
                          "(a StatefulSet pod's name does); set DUPEWATCH_SHARD=I/N instead")
    return parse_shard(f"{ordinal[1]}/{shards.strip()}", f"DUPEWATCH_SHARDS with {source} {name!r}")
