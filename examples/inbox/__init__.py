"""The reference app: the seeds' inbox-count recompute system, rebuilt on durably.

``python -m examples.inbox [--port 8000]`` runs the API, a worker and the scheduler in one
process. See ``examples/inbox/README.md``.
"""
