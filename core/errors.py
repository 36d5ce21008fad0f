"""One hierarchy of errors with stable codes, shared by edge and HQ.

Codes (also the CLI exit codes):

  10 HuiyuanError         anything the system refuses on purpose
  11 ValidationError      a field is missing, of the wrong type or out of range
  12 NotFound             a member, card, product, sale or staff is unknown
  13 Conflict             phone or card already registered, sale already returned
  14 Forbidden            a role may not do this (manager PIN needed), bad PIN/password
  15 InsufficientFunds    tenders do not cover the sale, balance too low, offline limit
  16 ProtocolError        a message on the wire is malformed, unknown or forged
  17 ConfigError          configuration is invalid
  18 DeviceError          a device failed
"""

from __future__ import annotations


class HuiyuanError(Exception):
    code = 10
    http_status = 400
    slug = "error"

    def __init__(self, message: str, *, field: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"error": self.slug, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.details:
            out["details"] = self.details
        return out


class ValidationError(HuiyuanError):
    code = 11
    http_status = 400
    slug = "invalid"


class NotFound(HuiyuanError):
    code = 12
    http_status = 404
    slug = "not_found"


class Conflict(HuiyuanError):
    code = 13
    http_status = 409
    slug = "conflict"


class Forbidden(HuiyuanError):
    code = 14
    http_status = 403
    slug = "forbidden"


class InsufficientFunds(HuiyuanError):
    code = 15
    http_status = 422
    slug = "insufficient"


class ProtocolError(HuiyuanError):
    code = 16
    http_status = 400
    slug = "protocol"


class ConfigError(HuiyuanError):
    code = 17
    http_status = 500
    slug = "config"


class DeviceError(HuiyuanError):
    code = 18
    http_status = 503
    slug = "device"


class Unauthorized(Forbidden):
    """Not signed in, or the session expired."""

    http_status = 401
    slug = "unauthorized"
