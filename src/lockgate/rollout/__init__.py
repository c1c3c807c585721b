"""Progressive delivery: plans of steps, live analysis, and the rollout state machine.

`analysis` measures candidate against stable and turns each measurement into a verdict; `verdicts`
holds the one set of rules that combines them; `machine` moves a rollout between states (pure, no
I/O); `controller` runs it against the store; `commands` are what operators call.
"""
