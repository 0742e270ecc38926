"""coldstream.train: training the trainable parts of a ``VideoModel`` from cached frozen features.

``pipeline`` (task -> feature cache -> clips), ``tasks`` (what to learn, from which data), ``trainer`` (the loop),
``checkpoint`` (exact resume), ``demo`` (the main job), ``cli`` (``coldstream train | eval | stream``).
"""
