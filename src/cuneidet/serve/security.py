"""Passwords (argon2id), login sessions, CSRF tokens and the login rate limit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cuneidet.serve.db import Session, User, utcnow

SESSION_COOKIE = "cuneidet_session"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD = 8
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


#: verified against when the user does not exist, so that a wrong name costs as much time as a
#: wrong password (no user enumeration by timing)
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def check_login(user: User | None, password: str) -> bool:
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return False
    return verify_password(user.password_hash, password)


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"the password needs at least {MIN_PASSWORD} characters"
    if len(password) > 1024:
        return "the password is longer than 1024 characters"
    return None


def username_problem(username: str) -> str | None:
    if not 1 <= len(username) <= 64:
        return "the user name needs 1 to 64 characters"
    if not set(username) <= USERNAME_CHARS:
        return "the user name may hold letters, digits and . _ - @ only"
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(user: User, hours: float) -> tuple[str, Session]:
    """A fresh random session token (for the cookie) and its row (holding only its hash)."""
    token = secrets.token_urlsafe(32)
    row = Session(
        token_hash=token_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(hours=hours),
    )
    return token, row


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


class LoginLimiter:
    """At most ``attempts`` failed logins per client address and per user name within
    ``window_s`` seconds; :meth:`retry_after` says how long a blocked key must wait."""

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, *keys: str) -> float:
        now = time.monotonic()
        with self._lock:
            waits = [
                self.window_s - (now - failures[0])
                for failures in (self._recent(k, now) for k in keys)
                if len(failures) >= self.attempts
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
