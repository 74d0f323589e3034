"""Offline retrieval: point-in-time correct training sets and materialization windows."""
