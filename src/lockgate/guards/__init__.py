"""Guards: checks on a request's input and a model's output, each ending in a named verdict."""
