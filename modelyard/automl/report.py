"""The data exploration report: one self-contained HTML page rendered from a DataProfile."""

from __future__ import annotations

from html import escape
from typing import Any

from modelyard.automl.profile import DataProfile

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f3f5f8; }
.warn { background: #fff6e0; border-left: 4px solid #e0a000; padding: 0.3rem 0.6rem;
        margin: 0.2rem 0; }
.bar { background: #6b8fd6; height: 0.8rem; display: inline-block; }
.neg { background: #d67b6b; }
.muted { color: #777; }
"""


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c if isinstance(c, _Raw) else escape(str(c))}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Already-escaped HTML."""


def _bar(fraction: float, negative: bool = False) -> _Raw:
    width = max(0.0, min(1.0, fraction)) * 200
    cls = "bar neg" if negative else "bar"
    return _Raw(f'<span class="{cls}" style="width:{width:.0f}px"></span>')


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def render(p: DataProfile, title: str = "Data exploration") -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{p.n_rows} rows, {p.n_columns} columns; problem: <b>{escape(p.problem_type)}</b>; "
        f"target: <b>{escape(p.target_col)}</b>",
    ]
    if p.time_col and p.time_range:
        parts.append(
            f"; time column <b>{escape(p.time_col)}</b> from {escape(p.time_range[0])} to "
            f"{escape(p.time_range[1])}"
        )
    parts.append(f"; {p.duplicate_rows} duplicate rows.</p>")

    parts.append("<h2>Warnings</h2>")
    if p.warnings:
        parts += [f'<div class="warn">{escape(w.message)}</div>' for w in p.warnings]
    else:
        parts.append("<p class='muted'>Nothing stands out.</p>")

    parts.append("<h2>Columns</h2>")
    rows = []
    for c in p.columns:
        detail = ", ".join(f"{k} {_fmt(v)}" for k, v in c.stats.items())
        if c.top_values:
            detail = ", ".join(f"{k} ({n})" for k, n in c.top_values)
        rows.append(
            [
                c.name,
                c.dtype,
                c.semantic_type,
                f"{c.missing} ({c.missing_fraction:.1%})",
                _bar(c.missing_fraction),
                c.distinct,
                detail or ", ".join(c.examples),
            ]
        )
    parts.append(
        _table(["column", "dtype", "treated as", "missing", "", "distinct", "values"], rows)
    )

    parts.append(f"<h2>Target: {escape(p.target_col)}</h2>")
    if "classes" in p.target:
        total = sum(p.target["classes"].values()) or 1
        parts.append(
            _table(
                ["class", "rows", "share", ""],
                [
                    [k, n, f"{n / total:.1%}", _bar(n / total)]
                    for k, n in p.target["classes"].items()
                ],
            )
        )
    else:
        stats = {k: p.target[k] for k in ("mean", "std", "min", "median", "max")}
        parts.append("<p>" + ", ".join(f"{k} {_fmt(v)}" for k, v in stats.items()) + "</p>")
        counts = p.target["histogram"]["counts"]
        edges = p.target["histogram"]["edges"]
        peak = max(counts) or 1
        parts.append(
            _table(
                ["from", "to", "rows", ""],
                [
                    [_fmt(edges[i]), _fmt(edges[i + 1]), n, _bar(n / peak)]
                    for i, n in enumerate(counts)
                ],
            )
        )

    if p.target_correlations:
        parts.append("<h2>Correlation with the target</h2>")
        rows = [
            [name, f"{r:+.3f}", _bar(abs(r), r < 0)]
            for name, r in list(p.target_correlations.items())[:30]
        ]
        parts.append(_table(["feature", "Pearson r", ""], rows))
    if p.correlated_pairs:
        parts.append("<h2>Strongly correlated features</h2>")
        parts.append(
            _table(
                ["feature", "feature", "r"], [[a, b, f"{r:+.3f}"] for a, b, r in p.correlated_pairs]
            )
        )
    parts.append("</body></html>")
    return "".join(parts)
