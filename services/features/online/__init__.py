"""Online stores: the latest feature values per entity, for low-latency lookups."""

from modelyard.services.features.online.base import OnlineRow, OnlineStore, open_online_store

__all__ = ["OnlineRow", "OnlineStore", "open_online_store"]
