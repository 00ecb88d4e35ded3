"""Profile text a client may set: a display name with bidi controls or invisible format
characters is refused (BAD_USER_INPUT) and changes nothing; emoji sequences joined by
ZWJ and ordinary scripts stay welcome."""

from __future__ import annotations

import pytest

from deployments.settings import Settings
from gateway.services.profiles import clean_profile
from storage.db import Database
from storage.errors import InvalidInput
from tests.support.social import call, make_members

UPDATE = "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { displayName } }"
ME = "query { me { displayName } }"

REFUSED = [
    "evil\u202egnp.exe",  # RIGHT-TO-LEFT OVERRIDE
    "\u2067isolate\u2069",  # RIGHT-TO-LEFT ISOLATE … POP DIRECTIONAL ISOLATE
    "a\u200fb",  # RIGHT-TO-LEFT MARK
    "ad\u200bmin",  # ZERO WIDTH SPACE
    "ad\u2060min",  # WORD JOINER
    "\ufeffadmin",  # ZERO WIDTH NO-BREAK SPACE (BOM)
    "ad\u00admin",  # SOFT HYPHEN
    "a\u200db",  # ZERO WIDTH JOINER between letters
    "tag\U000e0041",  # TAG LATIN CAPITAL LETTER A
    "line\u2028break",  # LINE SEPARATOR
]
WELCOME = [
    "Ada Lovelace",
    "Zoë Ångström",
    "עדה לאבלייס",  # Hebrew, right to left by itself
    "مرحبا",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, ZWNJ between letters
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467",  # emoji joined by ZWJ
    "\u2764\ufe0f heart",  # with a variation selector
]


@pytest.mark.parametrize("name", REFUSED)
def test_bidi_controls_and_invisible_characters_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        clean_profile(name, None, None, {"display_name"})


@pytest.mark.parametrize("name", WELCOME)
def test_scripts_and_emoji_are_welcome(name: str) -> None:
    assert clean_profile(name, None, None, {"display_name"}).fields["display_name"] == name


@pytest.mark.stack
async def test_update_profile_refuses_a_spoofing_display_name_and_keeps_the_old_one(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (member,) = await make_members(db, deployed, 1, prefix="prof")
    assert (await call(http_url, member, UPDATE, input={"displayName": "Ada"})).ok()
    for name in REFUSED:
        reply = await call(http_url, member, UPDATE, input={"displayName": name})
        assert reply.codes == ["BAD_USER_INPUT"], name
    assert (await call(http_url, member, ME)).ok()["me"]["displayName"] == "Ada"
