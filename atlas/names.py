"""Rules for dataset, array and attribute names, and the array directory encoding.

Names are arbitrary non-empty unicode except that they may not contain ``/``, may
not start with ``_`` (reserved for ATLAS), may not be ``.`` or ``..`` and must be
encodable as UTF-8 (no lone surrogates).

Every array name owns one directory (or object-store prefix) in the store.  The
directory name is a reversible encoding of the array name that is safe on every
file system and object store, including case-insensitive ones: lowercase ASCII
letters, digits and ``-`` stand for themselves; every other byte of the UTF-8
encoding is written as ``_`` followed by two lowercase hex digits.  ``Temp``
becomes ``_54emp`` and ``温度`` becomes ``_e6_b8_a9_e5_ba_a6``.
"""

from __future__ import annotations

from atlas.errors import InvalidNameError

__all__ = ["MAX_DIR_NAME", "decode_dir_name", "encode_dir_name", "validate_label", "validate_name"]

#: Longest directory name an array name may encode to (file systems allow 255 bytes).
MAX_DIR_NAME = 240

_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-")


def validate_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid dataset/array name, else raise.

    Parameters
    ----------
    name : object
        The candidate name.
    what : str
        What the name is for ("dataset", "array"), used in the error message.

    Raises
    ------
    InvalidNameError
        A ``ValueError`` naming the rule that was broken.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} name must be a str, got {type(name).__name__} {name!r}")
    if name == "":
        raise InvalidNameError(f"{what} name must not be empty")
    if "/" in name:
        raise InvalidNameError(f"{what} name {name!r} must not contain '/'")
    if name.startswith("_"):
        raise InvalidNameError(f"{what} name {name!r} must not start with '_' (reserved)")
    if name in (".", ".."):
        raise InvalidNameError(f"{what} name {name!r} is reserved")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNameError(f"{what} name {name!r} is not valid unicode (lone surrogate)") from None
    return name


def validate_label(label: object, what: str) -> str:
    """Return ``label`` if it is a non-empty str encodable as UTF-8 (attribute keys,
    dimension names), else raise :class:`InvalidNameError`."""
    if not isinstance(label, str) or label == "":
        raise InvalidNameError(f"{what} must be a non-empty str, got {label!r}")
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNameError(f"{what} {label!r} is not valid unicode (lone surrogate)") from None
    return label


def encode_dir_name(array_name: str) -> str:
    """Encode an array name as a directory name (see the module docstring).

    Raises
    ------
    InvalidNameError
        When the encoded form would exceed :data:`MAX_DIR_NAME` characters.
    """
    parts = []
    for byte in array_name.encode("utf-8"):
        parts.append(chr(byte) if byte in _PLAIN else f"_{byte:02x}")
    encoded = "".join(parts)
    if len(encoded) > MAX_DIR_NAME:
        raise InvalidNameError(
            f"array name {array_name[:40]!r}... is too long: its directory name would have "
            f"{len(encoded)} characters (at most {MAX_DIR_NAME})"
        )
    return encoded


def decode_dir_name(dir_name: str) -> str:
    """Inverse of :func:`encode_dir_name`."""
    out = bytearray()
    i = 0
    while i < len(dir_name):
        ch = dir_name[i]
        if ch == "_":
            out.append(int(dir_name[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(ch))
            i += 1
    return out.decode("utf-8")
