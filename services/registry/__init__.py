"""The model registry: registered models, versions, aliases, stages, events and lineage.

servicer.py -> service.py (rules; copies artifacts into registry storage; calls tracking over
gRPC) -> store/ (SQL). events.py fans committed events out to WatchModelEvents streams.
"""
