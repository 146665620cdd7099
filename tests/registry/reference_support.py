"""Digests shared by the reference tests."""

from __future__ import annotations

SHA256 = "sha256:" + "a1" * 32
SHA512 = "sha512:" + "0f" * 64
