"""The control plane's state: which release serves each route right now, and why.

`state` holds the persisted shape, `assignment` picks a release per request from it, `cache`
keeps a fresh copy in every worker, `commands` changes it (the CLI and the admin API call those).
The rollout state machine and its analysis live in `lockgate.rollout`.
"""
