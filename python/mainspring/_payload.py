"""Encoding of user data: msgspec JSON, typed by the functions' annotations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .errors import PayloadDecodeError, PayloadTooLargeError

# Temporal's default limit for one payload; large blobs belong in external storage.
DEFAULT_MAXIMUM_PAYLOAD_BYTES = 2 * 1024 * 1024

_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
EMPTY = b"null"
NULL = EMPTY


def encode(value: Any, maximum_bytes: int = DEFAULT_MAXIMUM_PAYLOAD_BYTES) -> bytes:
    """Encodes a value; raises :class:`PayloadTooLargeError` past ``maximum_bytes``."""
    try:
        data = _encoder.encode(value)
    except (TypeError, msgspec.EncodeError) as error:
        raise PayloadDecodeError(f"cannot encode {type(value).__name__}: {error}") from error
    if len(data) > maximum_bytes:
        raise PayloadTooLargeError(
            f"payload of {len(data)} bytes is over the {maximum_bytes}-byte limit"
        )
    return data


def decoder(type_: Any) -> Callable[[bytes], Any]:
    """The raw msgspec decode function for ``type_`` (raises msgspec errors; hot paths use it
    and fall back to :func:`decode` for the typed error)."""
    found = _decoders.get(type_)
    if found is None:
        found = msgspec.json.Decoder(type_)
        _decoders[type_] = found
    return found.decode


def decode(data: bytes, type_: Any = Any) -> Any:
    """Decodes a payload to ``type_``; raises :class:`PayloadDecodeError` if it does not fit."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = msgspec.json.Decoder(type_)
        _decoders[type_] = decoder
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        name = getattr(type_, "__name__", repr(type_))
        raise PayloadDecodeError(f"payload does not decode to {name}: {error}") from error
