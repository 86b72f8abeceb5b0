"""Signing keys: generated on first start into ``<data_dir>/keys``, published as a JWKS, rotatable.

One active key per algorithm: RSA-2048 for RS256 (id_tokens: OpenID Connect requires RS256 support;
and access tokens when ``access_token_alg`` is RS256) and EC P-256 for ES256 (access tokens by
default: an RSA-2048 signature was the largest single cost of a token request, a P-256 one costs
a seventh of it; verification happens once per token per process, ``bearer.py`` caches it). ``rotate()`` makes a new key of each algorithm active; the old ones stay in the JWKS
and keep verifying until every token they signed has expired (``retire_after`` seconds), then they
are pruned. A data directory from before ES256 gets its EC key on the next start.

Files are JWK JSON, mode 0600, written atomically; a lock file serialises processes that start
together. Processes that share a database on several machines must share this directory too.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet, RSAKey

__all__ = ["ALG", "ALGS", "KeyRing", "SigningKey"]

ALG = "RS256"
"""id_tokens (and the default of ``active``)."""
ALGS = ("RS256", "ES256")
"""Every algorithm the ring keeps an active key for."""


def _generate(alg: str) -> RSAKey | ECKey:
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters={"use": "sig", "alg": alg}, auto_kid=True)
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": alg}, auto_kid=True)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: RSAKey | ECKey
    created: int
    retired: int | None = None
    alg: str = ALG


class KeyRing:
    def __init__(self, directory: Path | str, *, retire_after: int = 86400, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(directory)
        self.retire_after = retire_after
        self.clock = clock
        self._keys: list[SigningKey] = []
        self._stamp: tuple[int, ...] = ()
        self._checked = 0.0
        self._keyset: KeySet | None = None
        self._loaded = False

    def _ensure(self) -> None:
        """Keys are read (or generated) on first use, so a server that never signs pays nothing."""
        if not self._loaded:
            self.load(create=True)

    # -- files --------------------------------------------------------------------------------

    def _lock(self) -> Any:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(self.dir / ".lock", "a+")
        fcntl.flock(fh, fcntl.LOCK_EX)
        return fh

    def _write(self, entry: SigningKey) -> None:
        jwk = {**entry.key.as_dict(private=True), "alg": entry.alg}
        data = {"jwk": jwk, "created": entry.created, "retired": entry.retired}
        tmp = self.dir / f".{entry.kid}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.dir / f"{entry.kid}.json")

    def _read_all(self) -> list[SigningKey]:
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                jwk = data["jwk"]
                key: RSAKey | ECKey = ECKey.import_key(jwk) if jwk.get("kty") == "EC" else RSAKey.import_key(jwk)
                alg = str(jwk.get("alg") or ALG)  # files from before ES256 are RSA keys without "alg"
            except (OSError, ValueError, KeyError) as exc:
                raise RuntimeError(f"Signing key file {path} cannot be read ({exc}); remove it or restore it.") from None
            out.append(SigningKey(str(jwk["kid"]), key, int(data["created"]), data.get("retired"), alg))
        out.sort(key=lambda k: (k.retired is None, k.created))
        return out

    def _dir_stamp(self) -> tuple[int, ...]:
        try:
            return (self.dir.stat().st_mtime_ns, len(list(self.dir.glob("*.json"))))
        except OSError:
            return ()

    def _new_key(self, alg: str) -> SigningKey:
        key = _generate(alg)
        return SigningKey(str(key.kid), key, int(self.clock()), alg=alg)

    def load(self, *, create: bool = False) -> None:
        with self._lock():
            keys = self._read_all()
            missing = [alg for alg in ALGS if not any(k.retired is None and k.alg == alg for k in keys)]
            if create and missing:
                for alg in missing:
                    self._write(self._new_key(alg))
                keys = self._read_all()
        self._set(keys)

    def _set(self, keys: list[SigningKey]) -> None:
        self._loaded = True
        self._keys = keys
        self._stamp = self._dir_stamp()
        self._keyset = KeySet([k.key for k in self.verifying_keys()])

    def maybe_reload(self) -> None:
        """Pick up a rotation done by another process (``ehrgate keys rotate``); cheap, at most once a second."""
        if not self._loaded:
            self._ensure()
            return
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        if self._dir_stamp() != self._stamp:
            self.load()

    def rotate(self) -> list[SigningKey]:
        """Make a new active key per algorithm; retire the current ones (they keep verifying until
        their tokens expire)."""
        now = int(self.clock())
        with self._lock():
            keys = self._read_all()
            for entry in keys:
                if entry.retired is None:
                    self._write(replace(entry, retired=now))
                elif now - entry.retired > self.retire_after:
                    (self.dir / f"{entry.kid}.json").unlink(missing_ok=True)
            new = [self._new_key(alg) for alg in ALGS]
            for entry in new:
                self._write(entry)
            keys = self._read_all()
        self._set(keys)
        return new

    # -- use ----------------------------------------------------------------------------------

    @property
    def active(self) -> SigningKey:
        """The active RS256 key (id_tokens)."""
        return self.active_for(ALG)

    def active_for(self, alg: str) -> SigningKey:
        self._ensure()
        for entry in reversed(self._keys):
            if entry.retired is None and entry.alg == alg:
                return entry
        raise RuntimeError(f"No active {alg} signing key in {self.dir}; run `ehrgate keys rotate`.")

    def verifying_keys(self) -> list[SigningKey]:
        self._ensure()
        now = self.clock()
        return [k for k in self._keys if k.retired is None or now - k.retired <= self.retire_after]

    @property
    def keyset(self) -> KeySet:
        self._ensure()
        assert self._keyset is not None
        return self._keyset

    def jwks(self) -> dict[str, Any]:
        keys = []
        for entry in self.verifying_keys():
            public = entry.key.as_dict(private=False)
            public.update({"kid": entry.kid, "use": "sig", "alg": entry.alg})
            keys.append(public)
        return {"keys": keys}
