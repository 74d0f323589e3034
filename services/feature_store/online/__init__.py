"""Online stores: the latest feature values per entity, for low-latency lookups."""

from modelyard.services.feature_store.online.base import OnlineRow, OnlineStore, open_online_store

__all__ = ["OnlineRow", "OnlineStore", "open_online_store"]
