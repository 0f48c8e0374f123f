"""The shipped RADIUS dictionary (config/dictionary/), read once through pyrad.

Reply attributes are named as FreeRADIUS names them ("Framed-IP-Address",
"Mikrotik-Rate-Limit"); ``encode`` turns (name, value) into wire octets with
pyrad's type encoders.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pyrad import tools
from pyrad.dictionary import Dictionary

import config
from aaa import packet

DICTIONARY_PATH = Path(config.__file__).resolve().parent / "dictionary" / "dictionary"


@functools.cache
def dictionary() -> Dictionary:
    return Dictionary(str(DICTIONARY_PATH))


@functools.cache
def code_of(name: str) -> int | tuple[int, int]:
    """Attribute number, or (vendor id, vendor type) for a VSA."""
    return dictionary().attrindex[name]


@functools.cache
def _attribute_of(name: str):
    return dictionary().attributes[name]


def encode(name: str, value) -> bytes:
    """One attribute (with its VSA wrapper) as it goes on the wire."""
    definition = _attribute_of(name)
    if isinstance(value, str) and definition.values.HasForward(value):
        # pyrad keeps VALUE names already encoded.
        data = definition.values.GetForward(value)
    else:
        data = tools.EncodeAttr(definition.type, value)
    key = code_of(name)
    if isinstance(key, tuple):
        return packet.vendor_attribute(key[0], key[1], data)
    return packet.attribute(key, data)


def encode_all(pairs) -> bytes:
    return b"".join(encode(name, value) for name, value in pairs)


def value_name(name: str, number: int) -> str | None:
    """The VALUE name of an integer attribute's number, e.g. 1 → "User-Request"."""
    values = _attribute_of(name).values
    key = number.to_bytes(4, "big")
    return values.GetBackward(key) if values.HasBackward(key) else None
