"""Drives Roster's Rocket.Chat routes with the unmodified PyPI client
`rocketchat-api` (import `rocketchat_API`), as a Rocket.Chat customer's
code would: the base URL is the only thing that differs.

Environment: RC_URL (…/compat/rocketchat/{accountId}), ADMIN_USER and
ADMIN_PASS (a user holding the admin role), PLAIN_USER and PLAIN_PASS (a
user with the `user` role). Every check is an assert; at the end one JSON
line with the ids made, for the Rust test to read back natively.
"""

import json
import os
import sys

from rocketchat_API.APIExceptions.RocketExceptions import (
    RocketApiException,
    RocketAuthenticationException,
)
from rocketchat_API.rocketchat import RocketChat

URL = os.environ["RC_URL"]


def refused(call, status):
    """`call` raises the library's API error with `status`; its body."""
    try:
        call()
    except RocketApiException as e:
        assert e.status_code == status, (e.status_code, e.response)
        assert e.response_json["success"] is False, e.response
        return e.response_json
    raise AssertionError(f"expected HTTP {status}")


def cannot_login(user, password):
    try:
        RocketChat(user, password, server_url=URL)
    except RocketAuthenticationException:
        return
    raise AssertionError(f"{user} logged in")


admin = RocketChat(os.environ["ADMIN_USER"], os.environ["ADMIN_PASS"], server_url=URL)
me = admin.me()
assert me["success"] is True and me["username"] == os.environ["ADMIN_USER"], me
assert "admin" in me["roles"], me

# users.create with every field Rocket.Chat's users.create takes.
created = admin.users_create(
    email="grace@example.com",
    name="Grace Hopper",
    password="correct horse battery",
    username="grace",
    active=True,
    nickname="amazing grace",
    bio="COBOL",
    joinDefaultChannels=False,
    statusText="compiling",
    roles=["user"],
    requirePasswordChange=False,
    setRandomPassword=False,
    sendWelcomeEmail=False,
    verified=True,
    customFields={},
)
assert created["success"] is True, created
user = created["user"]
uid = user["_id"]
assert user["username"] == "grace" and user["name"] == "Grace Hopper", user
assert user["emails"] == [{"address": "grace@example.com", "verified": True}], user
assert user["nickname"] == "amazing grace" and user["bio"] == "COBOL", user
assert user["statusText"] == "compiling" and user["roles"] == ["user"], user
assert user["active"] is True and user["type"] == "user", user
assert user["status"] == "offline" and user["requirePasswordChange"] is False, user

# The same username again: Rocket.Chat's field-unavailable refusal.
clash = refused(
    lambda: admin.users_create(
        email="other@example.com", name="Other", password="xyzzy-xyzzy", username="GRACE"
    ),
    400,
)
assert clash["errorType"] == "error-field-unavailable", clash

# Read it by id and by username; find it in the list by a JSON query.
assert admin.users_info(user_id=uid)["user"]["username"] == "grace"
assert admin.users_info(username="grace")["user"]["_id"] == uid
unknown = refused(lambda: admin.users_info(username="nobody"), 400)
assert unknown["errorType"] == "error-invalid-user", unknown
listed = list(admin.users_list(query=json.dumps({"username": "grace"})))
assert [u["_id"] for u in listed] == [uid], listed
by_prefix = list(
    admin.users_list(
        query=json.dumps({"name": {"$regex": "^grace", "$options": "i"}}),
        fields=json.dumps({"username": 1}),
    )
)
assert by_prefix == [{"_id": uid, "username": "grace"}], by_prefix
page = admin.call_api_get("users.list", count=1, offset=0, sort=json.dumps({"username": 1}))
assert page["count"] == 1 and page["total"] >= 3 and page["offset"] == 0, page
everyone = list(admin.users_list(count=1))
assert len(everyone) == page["total"], (len(everyone), page)

updated = admin.users_update(uid, name="Rear Admiral Hopper", nickname="grace h")
assert updated["user"]["name"] == "Rear Admiral Hopper", updated
assert updated["user"]["nickname"] == "grace h", updated

# The new user logs in with the same library and reads themself.
grace = RocketChat("grace", "correct horse battery", server_url=URL)
own = grace.me()
assert own["_id"] == uid and own["email"] == "grace@example.com", own
presence = grace.users_get_presence(user_id=uid)
assert presence["presence"] == "offline" and presence["connectionStatus"] == "offline", presence
assert admin.users_get_presence(username="grace") == {"presence": "offline", "success": True}
assert grace.users_set_status(message="on a ship")["success"] is True
assert admin.users_info(user_id=uid)["user"]["statusText"] == "on a ship"

# Deactivated: the login fails and the session already held is dead.
off = admin.users_set_active_status(uid, active_status=False)
assert off["user"] == {"_id": uid, "active": False}, off
cannot_login("grace", "correct horse battery")
dead = grace.session.get(URL + "/api/v1/me", headers=grace.headers)
assert dead.status_code == 401, dead.text
assert dead.json()["message"] == "You must be logged in to do this.", dead.text
on = admin.users_set_active_status(uid, active_status=True)
assert on["user"]["active"] is True, on
grace = RocketChat("grace", "correct horse battery", server_url=URL)
assert grace.me()["_id"] == uid

# A wrong password is the library's authentication error; so is an
# unknown user.
cannot_login("grace", "wrong password!")
cannot_login("nobody-here", "whatever-it-is")

# A plain user may not create users (nothing is written: the Rust side
# counts).
plain = RocketChat(os.environ["PLAIN_USER"], os.environ["PLAIN_PASS"], server_url=URL)
denied = refused(
    lambda: plain.users_create(
        email="mallory@example.com", name="Mallory", password="mallory-pass", username="mallory"
    ),
    403,
)
assert denied["errorType"] == "error-action-not-allowed", denied

# Roles: list, create a custom one, give it and take it away.
role_ids = [r["_id"] for r in admin.roles_list()["roles"]]
assert {"admin", "user", "bot", "guest"} <= set(role_ids), role_ids
role = admin.roles_create("Reviewer", description="reviews things")["role"]
assert role["name"] == "Reviewer" and role["protected"] is False, role
assert admin.roles_add_user_to_role(role["_id"], "grace")["role"]["_id"] == role["_id"]
assert role["_id"] in admin.users_info(user_id=uid)["user"]["roles"]
again = refused(lambda: admin.roles_add_user_to_role(role["_id"], "grace"), 400)
assert "already" in again["error"], again
admin.roles_remove_user_from_role(role["_id"], "grace")
assert role["_id"] not in admin.users_info(user_id=uid)["user"]["roles"]
perms = admin.permissions_list_all()
create_user = next(p for p in perms["update"] if p["_id"] == "create-user")
assert "admin" in create_user["roles"], create_user

# Channels (public rooms) and groups (private ones).
assert admin.channels_create("general-talk")["channel"]["t"] == "c"
channel = admin.channels_info(channel="general-talk")["channel"]
cid = channel["_id"]
assert admin.channels_invite(cid, uid)["channel"]["_id"] == cid
assert any(c["_id"] == cid for c in admin.channels_list())
assert admin.channels_kick(cid, uid)["success"] is True
group = admin.groups_create("staff-only", members=["grace"])["group"]
assert group["t"] == "p", group
assert admin.groups_info(room_id=group["_id"])["group"]["name"] == "staff-only"
# A group is not a channel.
assert refused(lambda: admin.channels_info(room_id=group["_id"]), 400)["errorType"] == "error-room-not-found"
assert any(g["_id"] == group["_id"] for g in grace.groups_list())
assert admin.groups_kick(group["_id"], uid)["success"] is True

# A token made for the user authenticates as that user.
token = admin.users_create_token(uid, None)["data"]
as_token = RocketChat(auth_token=token["authToken"], user_id=token["userId"], server_url=URL)
assert as_token.me()["_id"] == uid

# Logging out ends the session.
assert grace.logout()["status"] == "success"
gone = grace.session.get(URL + "/api/v1/me", headers=grace.headers)
assert gone.status_code == 401, gone.text

# Delete: the user is gone on every surface.
assert admin.users_delete(uid)["success"] is True
refused(lambda: admin.users_info(user_id=uid), 400)
cannot_login("grace", "correct horse battery")

# One user made here stays, for the native read-back.
kept = admin.users_create(
    email="ada@example.com", name="Ada Lovelace", password="analytical engine", username="ada",
    nickname="ada", bio="notes", statusText="computing", verified=False,
)["user"]
print(json.dumps({"kept": kept, "channel": cid, "group": group["_id"], "role": role["_id"]}))
sys.stdout.flush()
