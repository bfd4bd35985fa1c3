"""The engine: executor (one attempt of a run), worker (claim, lease, heartbeat),
scheduler (cron, lease recovery), flow (turning events into runs under flow control)."""
