"""The Inngest protocol (DESIGN §11): apps written with the official Inngest SDKs run on durably.

- ``sync``: an SDK's registration payload becomes durably registry entries (pure).
- ``api``: the endpoints the SDKs call at the host root (``/fn/register``, ``/e/{key}``).
- ``driver``: SDK runs are claimed like native ones and driven by calling the app's serve URL;
  each SDK step is a durably step (``engine.executor.Execution``'s memo, checkpoints and fencing).
- ``apps``: the PUT that makes an app sync (``durably dev -u URL``).
- ``signing``: the HMAC signatures of the protocol.
"""
