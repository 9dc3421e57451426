"""The base of repositories on tenant data: every query it builds filters by tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, inspect, select, tuple_
from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.models.base import TenantScoped

ModelT = TypeVar("ModelT", bound=TenantScoped)
"""A model of tenant data: a ``tenant_id`` and a UUID primary key ``id``."""
RowT = TypeVar("RowT", bound=TenantScoped)


class TenantScopedRepository(Generic[ModelT]):
    """Queries on one table of tenant data; a subclass names the table in ``model``."""

    model: type[ModelT]

    def __init__(self, session: Session) -> None:
        self.session = session

    def scoped(self, tenant_id: uuid.UUID) -> Select[ModelT]:
        """Select the tenant's rows of the table; every query of the subclass starts here."""
        return select(self.model).where(self.model.tenant_id == tenant_id)

    def add(self, row: RowT) -> RowT:
        """Insert a row now (flush), so that its defaults are set and constraints checked."""
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, tenant_id: uuid.UUID, id: uuid.UUID) -> ModelT | None:
        """The tenant's row with this key; None also when another tenant owns it."""
        (key,) = inspect(self.model).primary_key  # the UUID ``id`` of every table here
        return self.session.scalar(self.scoped(tenant_id).where(key == id))

    def get_or_404(
        self, tenant_id: uuid.UUID, id: uuid.UUID, *, what: str, param: str | None = None
    ) -> ModelT:
        """The tenant's row with this key, else ``NotFound("no such <what>")``."""
        row = self.get(tenant_id, id)
        if row is None:
            raise NotFound(f"no such {what}", param=param)
        return row

    def page(
        self,
        tenant_id: uuid.UUID,
        *,
        where: Iterable[ColumnElement[bool]] = (),
        order_by: Iterable[Any] = (),
        limit: int,
        offset: int = 0,
    ) -> tuple[list[ModelT], int]:
        """One page of the tenant's matching rows and how many match in all (both in SQL)."""
        query = self.scoped(tenant_id).where(*where)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(query.order_by(*order_by).limit(limit).offset(offset))
        return list(rows), int(total)

    def cursor_page(
        self,
        tenant_id: uuid.UUID,
        *,
        where: Iterable[ColumnElement[bool]] = (),
        after: uuid.UUID | None,
        limit: int,
        descending: bool = True,
    ) -> tuple[list[ModelT], bool]:
        """One page of the tenant's matching rows ordered by (created_at, id), starting just
        past the row ``after`` (OpenAI's cursor pagination), and whether more follow."""
        model: Any = self.model
        key = tuple_(model.created_at, model.id)
        where = list(where)
        query = self.scoped(tenant_id).where(*where)
        if after is not None:  # the cursor must be a row of this listing
            cursor = self.session.execute(
                select(model.created_at, model.id).where(
                    model.tenant_id == tenant_id, model.id == after, *where
                )
            ).first()
            if cursor is None:
                raise NotFound("no such object to page after", param="after")
            query = query.where(key < tuple_(*cursor) if descending else key > tuple_(*cursor))
        order = (
            (model.created_at.desc(), model.id.desc())
            if descending
            else (
                model.created_at,
                model.id,
            )
        )
        rows = list(self.session.scalars(query.order_by(*order).limit(limit + 1)))
        return rows[:limit], len(rows) > limit
