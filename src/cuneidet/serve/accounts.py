"""Accounts created outside the page (``cuneidet-serve create_admin=<name>``)."""

from __future__ import annotations

from sqlalchemy import select

from cuneidet.errors import ConfigError
from cuneidet.serve.db import User, open_database
from cuneidet.serve.security import hash_password, password_problem, username_problem
from cuneidet.serve.settings import ServeSettings


def add_account(settings: ServeSettings, username: str, password: str, admin: bool) -> int:
    """Create an account in the app's database; a taken name or weak password is refused."""
    problem = username_problem(username) or password_problem(password)
    if problem:
        raise ConfigError(f"cannot create {username!r}: {problem}")
    sessions = open_database(settings.database)
    with sessions() as db:
        if db.scalar(select(User).where(User.username == username)) is not None:
            raise ConfigError(f"the user name {username!r} is taken in {settings.database}")
        user = User(username=username, password_hash=hash_password(password), is_admin=admin)
        db.add(user)
        db.commit()
        return user.id
