"""Developer tools that are shipped with the package but never used on the serving path.

They live inside `lockgate` (rather than under tests/) so benchmarks, tests and humans can all
import or `python -m` them from an installed tree.
"""
