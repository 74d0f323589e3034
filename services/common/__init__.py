"""Plumbing every service shares: settings, server bootstrap, interceptors, storage."""
