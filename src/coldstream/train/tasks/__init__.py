"""Tasks: what a clip's label is, its loss and its metric (built-in tasks and dataset adapters)."""
