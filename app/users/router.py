"""`/api/users`: a tenant admin's people (a platform admin names the tenant with ?tenant=)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.deps import AdminActor, PlatformAdmin, SessionDep
from app.users import service
from app.users.schemas import (
    PasswordReset,
    PlatformAdminUpdate,
    UserCreate,
    UserOut,
    UserUpdate,
)

router = APIRouter(prefix="/api/users", tags=["admin"])


@router.get("", response_model=list[UserOut])
def list_users(actor: AdminActor, session: SessionDep) -> list[UserOut]:
    return [UserOut.of(u) for u in service.list_users(session, actor.tenant_id)]


@router.post("", response_model=UserOut, status_code=201)
def create_user(body: UserCreate, actor: AdminActor, session: SessionDep) -> UserOut:
    """Add an operator or admin with a first password (they can change it)."""
    user = service.add_tenant_user(session, actor.tenant_id, body.email, body.password, body.role)
    return UserOut.of(user)


@router.patch("/{user_id}", response_model=UserOut)
def update_user(
    user_id: uuid.UUID, body: UserUpdate, actor: AdminActor, session: SessionDep
) -> UserOut:
    """Change a role, or disable (their sessions end at once) or enable a user."""
    user = service.update_user(
        session, actor.tenant_id, actor.user_id, user_id, role=body.role, disabled=body.disabled
    )
    return UserOut.of(user)


@router.post("/{user_id}/password", response_model=UserOut)
def reset_password(
    user_id: uuid.UUID, body: PasswordReset, actor: AdminActor, session: SessionDep
) -> UserOut:
    """Set a user's password; their sessions end."""
    return UserOut.of(service.reset_password(session, actor.tenant_id, user_id, body.password))


platform_router = APIRouter(prefix="/api/platform-admins", tags=["admin"])


@platform_router.get("", response_model=list[UserOut])
def list_platform_admins(actor: PlatformAdmin, session: SessionDep) -> list[UserOut]:
    """The platform admins (platform admins only)."""
    return [UserOut.of(u) for u in service.platform_admins(session)]


@platform_router.patch("/{user_id}", response_model=UserOut)
def update_platform_admin(
    user_id: uuid.UUID, body: PlatformAdminUpdate, actor: PlatformAdmin, session: SessionDep
) -> UserOut:
    """Disable a platform admin (their sessions and tokens stop at once) or enable them; not
    oneself, and never the last enabled one."""
    return UserOut.of(
        service.set_platform_admin_disabled(session, actor.id, user_id, body.disabled)
    )
