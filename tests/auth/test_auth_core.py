"""Identity and access: passwords, access tokens (JWT), API tokens, contexts, roles."""

from __future__ import annotations

import datetime as dt
import json
from base64 import urlsafe_b64decode, urlsafe_b64encode

import jwt
import pytest

from workbench.auth import access, api_tokens, keys, passwords, service
from workbench.auth.context import RequestContext
from workbench.auth.permissions import PERMISSIONS, ROLES
from workbench.errors import AuthenticationError, IsolationError, PermissionDenied, ValidationError
from workbench.oltp import repo
from workbench.settings import load_settings

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def people(stores):
    repo.create_org(stores.db, "acme", "Acme")
    repo.create_org(stores.db, "globex", "Globex", "EUR")
    for email, org, role in (("ana@acme.test", "acme", "admin"), ("ed@acme.test", "acme", "editor"),
                             ("vi@acme.test", "acme", "viewer"), ("gus@globex.test", "globex", "admin")):
        service.create_user(stores.db, email, email.split("@")[0], "correct horse battery", actor="local:test")
        service.grant(stores.db, org, email, role, actor="local:test")
    return stores


def b64(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_passwords_are_argon2_and_short_ones_are_refused():
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")
    assert not passwords.verify(None, "anything at all")
    with pytest.raises(ValidationError, match="at least 12 characters"):
        passwords.hash_password("short")


def test_an_access_token_round_trips_and_carries_org_and_role(settings):
    token = access.issue(settings, user_id="u1", email="ana@acme.test", org_id="acme", role="editor")
    claims = access.verify(settings, token)
    assert (claims.user_id, claims.email, claims.org_id, claims.role) == ("u1", "ana@acme.test", "acme", "editor")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256" and header["kid"] == keys.key_ids(settings)[0]


def test_expired_foreign_and_tampered_tokens_are_refused(settings, tmp_path):
    old = access.issue(settings, user_id="u1", email="a@x.test", org_id="acme", role="viewer",
                       now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3), ttl=dt.timedelta(minutes=5))
    with pytest.raises(AuthenticationError, match="expired"):
        access.verify(settings, old)
    good = access.issue(settings, user_id="u1", email="a@x.test", org_id="acme", role="viewer")
    head, body, sig = good.split(".")
    claims = json.loads(unb64(body))
    claims.update(org="globex", role="admin")  # the classic: change the claims, keep the signature
    with pytest.raises(AuthenticationError, match="not valid"):
        access.verify(settings, f"{head}.{b64(json.dumps(claims).encode())}.{sig}")
    other_home = load_settings(home=tmp_path / "other", progress=False)  # another install's key
    foreign = access.issue(other_home, user_id="u1", email="a@x.test", org_id="acme", role="viewer")
    with pytest.raises(AuthenticationError, match="not valid"):
        access.verify(settings, foreign)
    wrong_audience = load_settings(home=settings.home, progress=False, jwt_audience="someone-else")
    with pytest.raises(AuthenticationError):
        access.verify(wrong_audience, good)
    with pytest.raises(AuthenticationError):
        access.verify(settings, "not.a.token")


def test_alg_none_and_algorithm_confusion_are_refused(tmp_path):
    settings = load_settings(home=tmp_path / "rsa", progress=False, jwt_algorithm="RS256")
    token = access.issue(settings, user_id="u1", email="a@x.test", org_id="acme", role="viewer")
    assert access.verify(settings, token).org_id == "acme"
    kid = jwt.get_unverified_header(token)["kid"]
    claims = json.loads(unb64(token.split(".")[1])) | {"role": "admin"}
    unsigned = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}."
    with pytest.raises(AuthenticationError):
        access.verify(settings, unsigned)
    # HS256 "signed" with the RS256 public key, which anyone may know
    public_pem = keys.verifying_key(settings, kid).verifying  # type: ignore[union-attr]
    import hashlib
    import hmac

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(public_pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(AuthenticationError):
        access.verify(settings, f"{head}.{body}.{sig}")


def test_rotation_keeps_old_tokens_until_their_key_is_retired(settings):
    before = access.issue(settings, user_id="u1", email="a@x.test", org_id="acme", role="viewer")
    first = keys.key_ids(settings)[0]
    second = keys.rotate(settings)
    after = access.issue(settings, user_id="u1", email="a@x.test", org_id="acme", role="viewer")
    assert jwt.get_unverified_header(after)["kid"] == second != first
    assert access.verify(settings, before).user_id == "u1"  # rotation logs nobody out
    keys.rotate(settings, retire=first)
    with pytest.raises(AuthenticationError):
        access.verify(settings, before)
    assert access.verify(settings, after).user_id == "u1"
    assert oct((settings.home / "jwt_keys.json").stat().st_mode & 0o777) == "0o600"


def test_api_tokens_are_hashed_revocable_and_expire(people):
    db = people.db
    row, token = api_tokens.create(db, "acme", "nightly", "editor", created_by="local:test",
                                   expires_at=NOW + dt.timedelta(days=1))
    assert token.startswith("wbt_") and token.split("_")[-1] not in row.secret_hash
    assert api_tokens.resolve(db, token, NOW).org_id == "acme"
    with pytest.raises(AuthenticationError):
        api_tokens.resolve(db, token[:-1] + ("A" if token[-1] != "A" else "B"), NOW)
    with pytest.raises(AuthenticationError):
        api_tokens.resolve(db, token, NOW + dt.timedelta(days=2))
    api_tokens.revoke(db, "acme", row.id)
    with pytest.raises(AuthenticationError, match="revoked, expired or mistyped"):
        api_tokens.resolve(db, token, NOW)
    listed = api_tokens.listing(db, "acme")
    assert listed["revoked"].to_list() == [True] and "secret" not in " ".join(listed.columns)


def test_contexts_follow_the_current_state_of_users_and_memberships(people):
    db, settings = people.db, people.settings
    token = service.login(db, settings, "ed@acme.test", "correct horse battery", "acme")
    assert service.context_for(db, settings, token).role == "editor"
    service.grant(db, "acme", "ed@acme.test", "viewer", actor="local:test")
    assert service.context_for(db, settings, token).role == "viewer"  # demotion applies at once
    service.grant(db, "acme", "ed@acme.test", "admin", actor="local:test")
    assert service.context_for(db, settings, token).role == "editor"  # never more than the token says
    with pytest.raises(AuthenticationError, match="another organisation"):
        service.context_for(db, settings, token, org_id="globex")
    service.set_disabled(db, "ed@acme.test", True, actor="local:test")
    with pytest.raises(AuthenticationError, match="no longer has access"):
        service.context_for(db, settings, token)


def test_login_refuses_wrong_passwords_non_members_and_audits_both(people):
    db, settings = people.db, people.settings
    for email, password, org in (("ana@acme.test", "wrong password!!", "acme"),
                                 ("nobody@acme.test", "correct horse battery", "acme"),
                                 ("gus@globex.test", "correct horse battery", "acme")):
        with pytest.raises(AuthenticationError, match="wrong email or password, or no access to 'acme'"):
            service.login(db, settings, email, password, org, address="10.0.0.1")
    service.login(db, settings, "ana@acme.test", "correct horse battery", "acme", address="10.0.0.1")
    events = service_events(people, "acme")
    assert events[0] == ("login", "user:ana@acme.test")
    assert ("login.failed", "user:ana@acme.test") in events and ("login.failed", "user:gus@globex.test") in events


def service_events(stores, org):
    from workbench import audit

    return [(r["action"], r["actor"]) for r in audit.events(stores.db, org).iter_rows(named=True)]


def test_roles_are_one_table_and_each_role_includes_the_one_below():
    assert ROLES == ("viewer", "editor", "admin")
    assert PERMISSIONS["viewer"] < PERMISSIONS["editor"] < PERMISSIONS["admin"]


def test_workspace_operations_check_the_role(people):
    import workbench

    settings = people.settings
    tokens = {email: service.login(people.db, settings, email, "correct horse battery", "acme")
              for email in ("ana@acme.test", "ed@acme.test", "vi@acme.test")}
    viewer = workbench.open("acme", settings, token=tokens["vi@acme.test"])
    assert viewer.ctx.actor == "user:vi@acme.test" and viewer.metric_catalog().height > 0
    with pytest.raises(PermissionDenied, match="vi@acme.test is viewer in 'acme'; config.write needs the editor"):
        viewer.define_metric("fee", "spend * 1.1")
    with pytest.raises(PermissionDenied):
        viewer.ingest("synthetic", "2026-11-01", "2026-11-02")
    editor = workbench.open("acme", settings, token=tokens["ed@acme.test"])
    editor.define_metric("fee", "spend * 1.1", comment="agency fee")
    assert editor.metric_history("fee")["author"].to_list() != []
    with pytest.raises(PermissionDenied, match="connections.manage needs the admin"):
        editor.add_connection("synthetic")
    with pytest.raises(PermissionDenied, match="tokens.manage needs the admin"):
        editor.create_token("x", "viewer")
    admin = workbench.open("acme", settings, token=tokens["ana@acme.test"])
    token = admin.create_token("nightly", "editor")
    scheduler = workbench.open("acme", settings, token=token)
    assert scheduler.ctx.actor.startswith("token:") and scheduler.ctx.role == "editor"
    with pytest.raises(PermissionDenied):
        scheduler.create_token("escalate", "admin")
    assert admin.audit(action="token")["action"].to_list() == ["token.create"]


def test_every_public_operation_is_guarded():
    from workbench.config_service import WorkspaceConfigs
    from workbench.rules.api import Rules
    from workbench.workspace import Workspace

    guard_itself = {"throttle"}  # the rate limit the guard applies
    unguarded = [f"{cls.__name__}.{name}" for cls in (Workspace, Rules, WorkspaceConfigs)
                 for name, fn in vars(cls).items()
                 if callable(fn) and not name.startswith("_") and not isinstance(fn, staticmethod)
                 and name not in guard_itself and not hasattr(fn, "__permission__")]
    assert unguarded == []


def test_required_auth_fails_closed_without_a_token_and_for_another_organisation(people, tmp_path):
    import workbench
    from workbench.workspace import Workspace

    strict = load_settings(home=people.settings.home, progress=False, auth="required")
    with pytest.raises(AuthenticationError, match="needs a login or an API token"):
        workbench.open("acme", strict)
    with pytest.raises(IsolationError):
        Workspace(people, "acme", RequestContext("user:gus@globex.test", "globex", "admin"))
    globex = service.login(people.db, people.settings, "gus@globex.test", "correct horse battery", "globex")
    with pytest.raises(AuthenticationError, match="another organisation"):
        workbench.open("acme", people.settings, token=globex)


def limited_home(tmp_path, plans_yaml):
    """A home whose rate-limit plans are ``plans_yaml``, with acme and its viewer."""
    from workbench.stores import init

    plans = tmp_path / "plans.yaml"
    plans.write_text(plans_yaml)
    stores = init(load_settings(home=tmp_path / "limited", progress=False, rate_limits_file=plans))
    repo.create_org(stores.db, "acme", "Acme")
    service.create_user(stores.db, "vi@acme.test", "vi", "correct horse battery", actor="local:test")
    service.grant(stores.db, "acme", "vi@acme.test", "viewer", actor="local:test")
    return stores


def test_users_are_rate_limited_but_not_the_local_operator(tmp_path):
    import workbench
    from workbench.ratelimit import RateLimitedError

    stores = limited_home(tmp_path, "plans:\n  standard:\n    user: {rate: 0.001, burst: 3}\n")
    token = service.login(stores.db, stores.settings, "vi@acme.test", "correct horse battery", "acme")
    viewer = workbench.open("acme", stores.settings, token=token)
    for _ in range(3):
        viewer.metric_catalog()
    with pytest.raises(RateLimitedError, match=r"too many requests for user vi@acme.test \(limit .*\): retry in"):
        viewer.rules.list()  # the accessor's operations count too
    local = workbench.open("acme", stores.settings)
    for _ in range(10):
        local.metric_catalog()


def test_login_attempts_are_throttled_per_login(tmp_path):
    from workbench.ratelimit import RateLimitedError

    stores = limited_home(tmp_path, "plans:\n  standard:\n    login: {rate: 0.001, burst: 3}\n")
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            service.login(stores.db, stores.settings, "vi@acme.test", "not the password", "acme", address="10.1.1.1")
    with pytest.raises(RateLimitedError, match="retry in"):  # even the right password waits now
        service.login(stores.db, stores.settings, "vi@acme.test", "correct horse battery", "acme", address="10.1.1.1")
