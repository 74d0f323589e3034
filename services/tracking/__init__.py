"""The tracking service: experiments, runs, params, metrics, tags, dataset inputs, run artifacts.

servicer.py (proto <-> entities) -> service.py (rules, artifacts) -> store/ (SQL).
"""
