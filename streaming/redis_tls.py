"""TLS connections to Redis whose handshake failures name the setting to fix.

redis-py reports a bad certificate as a bare "SSL: CERTIFICATE_VERIFY_FAILED"; operators need to
know which of REDIS_CA_FILE, REDIS_CHECK_HOSTNAME or REDIS_CERT_FILE/REDIS_KEY_FILE is wrong.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from threefold.core.errors import ServiceError


class RedisTLSError(ServiceError, RedisConnectionError):
    """The TLS handshake with Redis failed. Also a redis ConnectionError, so apps degrade."""


class NamedSettingSSLConnection(SSLConnection):
    """An SSLConnection that turns handshake errors into RedisTLSError naming the setting."""

    def _connect(self) -> Any:
        try:
            return super()._connect()
        except ssl.SSLCertVerificationError as exc:
            raise RedisTLSError(self._verify_message(exc)) from None
        except ssl.SSLError as exc:
            raise RedisTLSError(
                f"the TLS handshake with Redis at {self.host}:{self.port} failed "
                f"({exc.reason or exc}); check that REDIS_URL uses rediss:// for a TLS port, and "
                "REDIS_CERT_FILE / REDIS_KEY_FILE when the server asks for a client certificate"
            ) from None

    def _verify_message(self, exc: ssl.SSLCertVerificationError) -> str:
        where = f"Redis at {self.host}:{self.port}"
        reason = exc.verify_message or exc.reason or str(exc)
        if "hostname" in str(exc).lower() or "IP address mismatch" in str(exc):
            return (
                f"the TLS certificate of {where} is not valid for {self.host!r} ({reason}); "
                "connect with the name in the certificate or set REDIS_CHECK_HOSTNAME=false"
            )
        ca = f"REDIS_CA_FILE={self.ca_certs!r}" if self.ca_certs else "REDIS_CA_FILE (unset)"
        return (
            f"cannot verify the TLS certificate of {where} ({reason}) with {ca}; "
            "point REDIS_CA_FILE at the CA bundle that signed the server's certificate"
        )
