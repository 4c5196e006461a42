"""Signing keys kept in the database: the dev issuer's RSA key per tenant, and the service's Ed25519 key
that signs offline licenses. A key is made on first use and kept, so every process sharing the database
signs and verifies alike; rotation keeps a retired key's public half published until its tokens expire."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm
from sqlalchemy import Connection, insert, or_, select, update

from licensedesk.context import Context
from licensedesk.db.schema import SYSTEM_TENANT, signing_keys

DEV_ISSUER = "dev-issuer"
LICENSE = "license"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: Any
    public_jwk: dict[str, Any]


def _new_key(purpose: str) -> tuple[str, str, dict[str, Any], Any]:
    kid = uuid.uuid4().hex[:16]
    if purpose == LICENSE:
        private: Any = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        alg = "EdDSA"
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
        alg = "RS256"
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return kid, alg, jwk, pem


def _load(row: Any) -> SigningKey:
    private = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
    return SigningKey(row.id, row.alg, private, json.loads(row.public_jwk))


class KeyStore:
    """The current signing key per (tenant, purpose), cached in the process."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._current: dict[tuple[str, str], SigningKey] = {}
        self._lock = threading.Lock()

    def current(self, purpose: str, tenant_id: str = SYSTEM_TENANT) -> SigningKey:
        key = self._current.get((tenant_id, purpose))
        if key is not None:
            return key
        with self._lock:
            key = self._current.get((tenant_id, purpose))
            if key is None:
                key = self._current_or_create(purpose, tenant_id)
                self._current[(tenant_id, purpose)] = key
        return key

    def _current_or_create(self, purpose: str, tenant_id: str) -> SigningKey:
        with self.ctx.db.read() as conn:
            row = _newest(conn, purpose, tenant_id)
        if row is not None:
            return _load(row)
        with self.ctx.db.write() as conn:
            row = _newest(conn, purpose, tenant_id)  # another process may have made it meanwhile
            if row is None:
                _insert(conn, purpose, tenant_id, self.ctx.clock.now())
                row = _newest(conn, purpose, tenant_id)
            return _load(row)

    def published(self, purpose: str, tenant_id: str = SYSTEM_TENANT) -> list[dict[str, Any]]:
        """Public keys to publish: the current one and retired ones whose tokens may still be valid."""
        self.current(purpose, tenant_id)
        now = self.ctx.clock.now()
        with self.ctx.db.read() as conn:
            rows = conn.execute(
                select(signing_keys.c.public_jwk)
                .where(
                    signing_keys.c.tenant_id == tenant_id,
                    signing_keys.c.purpose == purpose,
                    or_(signing_keys.c.retired_at.is_(None), signing_keys.c.publish_until > now),
                )
                .order_by(signing_keys.c.created_at.desc())
            ).scalars()
            return [json.loads(r) for r in rows]

    def verification_key(self, purpose: str, tenant_id: str, kid: str) -> Any:
        """The public key of a kid still published, or None."""
        for jwk in self.published(purpose, tenant_id):
            if jwk.get("kid") == kid:
                algorithm = OKPAlgorithm() if jwk.get("kty") == "OKP" else RSAAlgorithm(RSAAlgorithm.SHA256)
                return algorithm.from_jwk(json.dumps(jwk))
        return None

    def rotate(self, purpose: str, tenant_id: str = SYSTEM_TENANT, *, publish_for: timedelta) -> SigningKey:
        """Make a new current key; the old one stays published for `publish_for` (its tokens' lifetime)."""
        now = self.ctx.clock.now()
        with self.ctx.db.write() as conn:
            conn.execute(
                update(signing_keys)
                .where(
                    signing_keys.c.tenant_id == tenant_id,
                    signing_keys.c.purpose == purpose,
                    signing_keys.c.retired_at.is_(None),
                )
                .values(retired_at=now, publish_until=now + publish_for)
            )
            _insert(conn, purpose, tenant_id, now)
            key = _load(_newest(conn, purpose, tenant_id))
        with self._lock:
            self._current[(tenant_id, purpose)] = key
        return key

    def forget(self) -> None:
        with self._lock:
            self._current.clear()


def _newest(conn: Connection, purpose: str, tenant_id: str) -> Any:
    return conn.execute(
        select(signing_keys)
        .where(
            signing_keys.c.tenant_id == tenant_id,
            signing_keys.c.purpose == purpose,
            signing_keys.c.retired_at.is_(None),
        )
        .order_by(signing_keys.c.created_at.desc(), signing_keys.c.id)
        .limit(1)
    ).first()


def _insert(conn: Connection, purpose: str, tenant_id: str, now: datetime) -> None:
    kid, alg, jwk, pem = _new_key(purpose)
    conn.execute(
        insert(signing_keys).values(
            tenant_id=tenant_id,
            id=kid,
            purpose=purpose,
            alg=alg,
            private_pem=pem,
            public_jwk=json.dumps(jwk),
            created_at=now,
        )
    )
