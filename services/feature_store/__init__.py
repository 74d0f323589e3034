"""The feature store service: definitions (apply with a plan), point-in-time training sets on
DuckDB, materialization into an online store (SQLite or Redis), and online lookups.

servicer.py -> service.py (definitions, apply/plan) / retrieval.py / online_lookup.py ->
store/ (definitions, history, materializations), offline/ (engines), online/ (stores).
"""
