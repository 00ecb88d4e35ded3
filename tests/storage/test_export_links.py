"""Signed data export links: the signature covers the export and the expiry, under a key of
its own derived from the secret key."""

from __future__ import annotations

import time
import uuid

import pytest

from storage.errors import ConfigError
from storage.export_links import ARCHIVE, ExportLinks


def test_a_link_verifies_until_it_expires_and_only_for_its_export() -> None:
    links = ExportLinks("a secret")
    export_id = uuid.uuid4()
    later = int(time.time()) + 60
    url = links.url("https://nova.example/", export_id, later)
    signature = links.signature(export_id, later)
    assert url == f"https://nova.example/exports/{export_id}/{signature}/{later}/{ARCHIVE}"
    assert links.valid(export_id, signature, later)
    assert not links.valid(uuid.uuid4(), signature, later)
    assert not links.valid(export_id, signature, later + 1)
    assert not links.valid(export_id, "0" * len(signature), later)
    earlier = int(time.time()) - 1
    assert not links.valid(export_id, links.signature(export_id, earlier), earlier)
    assert not ExportLinks("another secret").valid(export_id, signature, later)


def test_links_need_a_secret_key() -> None:
    with pytest.raises(ConfigError):
        ExportLinks(None)
