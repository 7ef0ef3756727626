"""Version tags: the token a backend hands out with an object and takes back for a conditional commit.

On object stores a tag packs the object's ETag and (where the store has one) its
version id into one string (:func:`encode_version` / :func:`decode_version`).  The
local backend tags a manifest by a digest of its content (:func:`content_version`).
Tags live only in the process that read them; none is ever stored.
"""

from __future__ import annotations

import hashlib

from atlas.backends.base import Version

__all__ = ["content_version", "decode_version", "encode_version", "meta_version"]


def content_version(data: bytes) -> Version:
    """The tag of an object by its content (a BLAKE2b digest: any change of the bytes changes it)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def encode_version(e_tag: str | None, version: str | None) -> Version | None:
    """One token for an ETag and a version id; None when the store gave neither."""
    if e_tag is None and version is None:
        return None
    return (e_tag or "") if version is None else f"{e_tag or ''}\n{version}"


def decode_version(value: Version) -> dict[str, str]:
    """The ``mode`` of a conditional put that expects the object at ``value``."""
    e_tag, _, version = value.partition("\n")
    mode: dict[str, str] = {}
    if e_tag:
        mode["e_tag"] = e_tag
    if version:
        mode["version"] = version
    return mode


def meta_version(meta: dict) -> Version:
    """The version tag of a listed/read object; stores without ETags get a weak tag."""
    tag = encode_version(meta.get("e_tag"), meta.get("version"))
    if tag is not None:
        return tag
    modified = meta.get("last_modified")
    stamp = modified.timestamp() if modified is not None else 0.0
    return f"~size={meta.get('size')};mtime={stamp}"  # "~": cannot drive a conditional put
