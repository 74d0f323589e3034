"""Modelyard's gRPC services (installed as `modelyard.services`)."""
