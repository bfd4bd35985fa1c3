"""The transactional bodies of the store verbs, shared by every dialect, by concern.

Each function runs inside one open transaction ``tx`` (a ``Tx``: named statements of the
dialect, the store's clock as ``tx.now``, the env as ``tx.env``). Nothing here knows which
database it talks to, and nothing here calls back into the engine: runs are planned from
the registry's configs by ``core.flow``.
"""

from .claim import claim
from .maintenance import (acquire_leadership, delete_env, hand_back, heartbeat, prune, recover, release, release_leadership,
                          remove_worker)
from .runs import (backfill_cron, cancel, create_run, create_runs, dispatch, expire, finish, fire_cron, ingest, record_dispatch,
                   register, watch_end)
from .operator import audited, cancel_many, pause, record, resume
from .steps import checkpoint, suspend
from .tx import KEY_TTL, Tx

__all__ = ["Tx", "KEY_TTL", "ingest", "create_run", "create_runs", "claim", "checkpoint", "suspend", "finish",
           "cancel", "expire", "register", "fire_cron", "backfill_cron", "dispatch", "record_dispatch", "heartbeat", "hand_back",
           "remove_worker", "release", "recover", "acquire_leadership", "release_leadership", "prune", "watch_end",
           "audited", "record", "pause", "resume", "cancel_many", "delete_env"]
