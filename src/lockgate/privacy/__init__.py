"""What a trace may keep about the people behind a request.

- `secret`: the per-install secret in the data folder that keys everything below.
- `pseudonym`: user ids become keyed pseudonyms: stable (sticky rollouts, feedback) but not
  reversible by hashing guesses.
- `content`: prompts and outputs in full, redacted, hashed or not at all, per route; credentials
  never, in any mode.
"""
