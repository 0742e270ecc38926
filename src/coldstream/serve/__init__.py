"""coldstream.serve: many live streams on one device through one ``VideoModel``.

    from coldstream.serve import StreamEngine, StreamServer
    engine = StreamEngine(model, slots=8)                 # a pool of 8 stream slots
    server = StreamServer(engine)
    for path in paths:
        server.add(path)                                  # or a coldstream.io source, or an iterable of frames
    stats = server.run(on_output=lambda sid, out: ...)    # per stream: frames, fps, p50/p99 latency

``StreamEngine`` alone is the synchronous core: ``join`` / ``leave`` a stream at any frame and ``step`` a dict of
frames. ``coldstream serve VIDEO... --streams N`` runs it from the command line. Design and limits: ``docs/serve.md``.
"""

from coldstream.serve.engine import EngineFullError, StreamEngine, default_buckets
from coldstream.serve.server import StreamServer
from coldstream.serve.stats import StreamStats, percentile

__all__ = ["EngineFullError", "StreamEngine", "StreamServer", "StreamStats", "default_buckets", "percentile"]
