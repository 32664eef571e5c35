"""Fleet mode: one check over the many databases of a server, or the tenant schemas of a database.

- `targets`: what a target is (a database, or a database and schema, on a server) and how a config whose checks
  name a `source` is expanded into one check per target (`expand`), which every face then runs as it is.
- `discover`: listing a source's targets (PostgreSQL `pg_database`, MySQL `SHOW DATABASES`, a `schemas_query`,
  a static list), filtered by `include`/`exclude`; `Discovery` re-runs it on each source's interval and keeps the
  last good list when it fails.
- `shard`: which targets a daemon owns when several share the fleet (`--shard I/N`, or the environment).
- `budget`: the limits a daemon holds over its targets: checks running at once, connections per server, one
  check per target at a time, and a server that refuses connections backing off as a whole.
- `refusal`: why a target's connect failed, asked of its server: the whole server refusing, or one database.

No coordination service: shards split the targets by a stable hash of their identity, so N daemons given the
same config check every target exactly once.
"""

from monitor.fleet.discover import Discovery, discover
from monitor.fleet.shard import Shard, shard_from_environment
from monitor.fleet.targets import Target, expand, series_labels, static_label_names

__all__ = ["Discovery", "Shard", "Target", "discover", "expand", "series_labels", "shard_from_environment",
           "static_label_names"]
