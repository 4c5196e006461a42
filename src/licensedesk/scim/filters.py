"""SCIM filters (RFC 7644 section 3.4.2.2) translated to SQL conditions, so that the database filters,
counts and pages: nothing is filtered in Python after loading rows.

An attribute that cannot be translated is refused with 400 invalidFilter rather than matched in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scim2_models import InvalidFilterException
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import and_, false, func, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


@dataclass(frozen=True)
class Column:
    """A filterable SCIM attribute: its SQL expression and how its values compare."""

    expr: Any
    kind: str  # text (case-insensitive) | exact (case-sensitive) | bool | time
    nullable: bool = False


@dataclass(frozen=True)
class Membership:
    """A multi-valued attribute whose values live in another table (members, groups): `exists(value)`
    answers the condition "some value compares so", `any_value()` the condition "has at least one"."""

    exists: Callable[[CompareOperator, str], ColumnElement[bool]]
    any_value: Callable[[], ColumnElement[bool]]


Attributes = dict[str, Column | Membership]


def _name(path: AttrPath, schema: str) -> str:
    if path.uri is not None and path.uri.lower() != schema.lower():
        raise InvalidFilterException(detail=f"attribute {path} cannot be filtered on here")
    name = path.attr.lower()
    return f"{name}.{path.sub_attr.lower()}" if path.sub_attr else name


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidFilterException(detail="a date-time is compared with a string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilterException(detail=f"{value!r} is not a date-time") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def compare(column: Column, op: CompareOperator, value: Any) -> ColumnElement[bool]:
    expr = column.expr
    if value is None:  # "eq null" means "not present" (RFC 7644 3.4.2.2)
        if op == CompareOperator.eq:
            return expr.is_(None) if column.nullable else false()
        if op == CompareOperator.ne:
            return expr.is_not(None) if column.nullable else true()
        raise InvalidFilterException(detail=f"null cannot be compared with {op.value}")
    if column.kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"  # Entra sends booleans as strings
        if not isinstance(value, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
            raise InvalidFilterException(
                detail="a boolean attribute is compared with eq or ne and true or false"
            )
        return expr == value if op == CompareOperator.eq else expr != value
    if column.kind == "time":
        when = _time(value)
        ops = {
            CompareOperator.eq: expr == when,
            CompareOperator.ne: expr != when,
            CompareOperator.gt: expr > when,
            CompareOperator.ge: expr >= when,
            CompareOperator.lt: expr < when,
            CompareOperator.le: expr <= when,
        }
        if op not in ops:
            raise InvalidFilterException(detail=f"a date-time is not compared with {op.value}")
        return ops[op]
    if not isinstance(value, str):
        raise InvalidFilterException(detail="a string attribute is compared with a string")
    if column.kind == "text":
        expr = func.lower(expr)
        value = value.lower()
    if op == CompareOperator.eq:
        return expr == value
    if op == CompareOperator.ne:
        # a missing value is "not equal" as well
        return or_(expr != value, expr.is_(None)) if column.nullable else expr != value
    if op == CompareOperator.co:
        return expr.like("%" + _like_escape(value) + "%", escape="\\")
    if op == CompareOperator.sw:
        return expr.like(_like_escape(value) + "%", escape="\\")
    if op == CompareOperator.ew:
        return expr.like("%" + _like_escape(value), escape="\\")
    return {
        CompareOperator.gt: expr > value,
        CompareOperator.ge: expr >= value,
        CompareOperator.lt: expr < value,
        CompareOperator.le: expr <= value,
    }[op]


def present(column: Column) -> ColumnElement[bool]:
    if column.kind in ("text", "exact"):
        return and_(column.expr.is_not(None), column.expr != "")
    return column.expr.is_not(None) if column.nullable else true()


class SqlFilter(FilterVisitor[ColumnElement[bool]]):
    """A SCIM filter as a SQL condition over the attributes of one resource type."""

    def __init__(self, attributes: Attributes, schema: str) -> None:
        self.attributes = attributes
        self.schema = schema

    def _attribute(self, path: AttrPath) -> Column | Membership:
        name = _name(path, self.schema)
        found = self.attributes.get(name)
        if found is None and path.sub_attr is None:
            found = self.attributes.get(f"{name}.value")  # "members eq x" means "members.value eq x"
        if found is None:
            raise InvalidFilterException(detail=f"filtering on {path} is not supported")
        return found

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        found = self._attribute(node.attr_path)
        if isinstance(found, Membership):
            if not isinstance(node.value, str):
                raise InvalidFilterException(detail="a member is named by its id")
            if node.op not in (CompareOperator.eq, CompareOperator.ne):
                raise InvalidFilterException(detail="members are compared with eq or ne")
            match = found.exists(CompareOperator.eq, node.value)
            return match if node.op == CompareOperator.eq else not_(match)
        return compare(found, node.op, node.value)

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        found = self._attribute(node.attr_path)
        if isinstance(found, Membership):
            return found.any_value()
        return present(found)

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op == LogicalOperator.and_ else or_(*terms)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        # members[value eq "x"]: only a comparison of the value sub-attribute can be translated
        inner = node.val_filter
        if (
            isinstance(inner, Comparison)
            and inner.attr_path.sub_attr is None
            and inner.attr_path.attr.lower() == "value"
        ):
            return self.visit_comparison(
                Comparison(AttrPath(node.attr_path.attr, "value", node.attr_path.uri), inner.op, inner.value)
            )
        raise InvalidFilterException(detail=f"filtering on {node} is not supported")


def to_sql(node: FilterNode | None, attributes: Attributes, schema: str) -> ColumnElement[bool]:
    if node is None:
        return true()
    return SqlFilter(attributes, schema).visit(node)
