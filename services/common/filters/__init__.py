"""MLflow's search grammar, parsed into a typed AST that each service compiles to SQL."""

from modelyard.services.common.filters.grammar import (
    Comparison,
    OrderKey,
    parse_filter,
    parse_order_by,
)

__all__ = ["Comparison", "OrderKey", "parse_filter", "parse_order_by"]
