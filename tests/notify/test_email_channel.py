import pytest
from notify_helpers import clock, queue

from workbench import notify
from workbench.notify.email import message_id
from workbench.oltp.models import Notification
from workbench.settings import Settings


def configure(stores, port, **smtp):
    stores.settings = Settings(**{**stores.settings.model_dump(), "smtp_host": "127.0.0.1", "smtp_port": port,
                                  "smtp_tls": "none", "smtp_from": "Workbench <alerts@wb.example>", **smtp})


def only(stores):
    [n] = notify.notifications(stores.db, "acme")
    return n


def test_plain_smtp_delivers_subject_addresses_body_and_stable_message_id(nstores, smtp_server):
    box, port = smtp_server()
    configure(nstores, port)
    queue(nstores, "email", "ana@acme.example", "k-mail-1")
    queue(nstores, "email", "bob@acme.example", "k-mail-2", n_items=1, title="Spend spike\r\nBcc: evil@x.example")
    assert notify.dispatch(nstores).sent == 2
    first, second = box.messages
    assert first["Subject"] == "2 campaigns above target CPA"
    assert first["From"] == "Workbench <alerts@wb.example>" and first["To"] == "ana@acme.example"
    assert box.envelopes[0] == ("alerts@wb.example", ["ana@acme.example"])
    assert first["Message-ID"] == message_id("k-mail-1", "alerts@wb.example") != second["Message-ID"]
    assert first["Message-ID"].endswith("@wb.example>") and first["X-Workbench-Idempotency-Key"] == "k-mail-1"
    text = first.get_body(("plain",)).get_content()
    for fragment in ("Campaign 1", "Campaign 2", "CPA: $41.20", "https://workbench.example/acme/alerts"):
        assert fragment in text
    assert "<td>$42.20</td>" in first.get_body(("html",)).get_content()
    assert second["Subject"] == "Spend spike Bcc: evil@x.example" and second["Bcc"] is None


def test_the_message_id_is_the_same_on_every_redelivery(nstores, smtp_server):
    box, port = smtp_server()
    configure(nstores, port)
    queue(nstores, "email", "ana@acme.example", "k-mail")
    notify.dispatch(nstores)
    with nstores.db.session() as s:  # as if the dispatcher had died after sending, before recording it
        row = s.get(Notification, only(nstores).id)
        row.status, row.claimed_at = "sending", clock(-301)
    assert notify.dispatch(nstores).sent == 1
    assert len(box.messages) == 2 and box.messages[0]["Message-ID"] == box.messages[1]["Message-ID"]


def test_starttls_with_login(nstores, smtp_server, tls_ca):
    from aiosmtpd.smtp import AuthResult

    server_ctx, ca_file = tls_ca

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"alerts", b"pa55-XXXXsecretXXXX"),
                          handled=False)

    box, port = smtp_server(tls_context=server_ctx, require_starttls=True, authenticator=authenticator,
                            auth_required=True)
    configure(nstores, port, smtp_tls="starttls", smtp_ca_file=ca_file, smtp_username="alerts",
              smtp_password="pa55-XXXXsecretXXXX")
    queue(nstores, "email", "ana@acme.example", "k-tls")
    assert notify.dispatch(nstores).sent == 1 and len(box.messages) == 1
    configure(nstores, port, smtp_tls="starttls", smtp_ca_file=ca_file, smtp_username="alerts",
              smtp_password="wrong-XXXXsecretXXXX")
    queue(nstores, "email", "ana@acme.example", "k-bad-login")
    assert notify.dispatch(nstores).failed == 1
    bad = notify.notifications(nstores.db, "acme", statuses=["failed"])[0]
    assert bad.last_error.startswith("email to ana@acme.example: SMTP 535") and "XXXX" not in bad.last_error


def test_implicit_tls_and_an_untrusted_certificate(nstores, smtp_server, tls_ca):
    server_ctx, ca_file = tls_ca
    box, port = smtp_server(ssl_context=server_ctx)
    configure(nstores, port, smtp_tls="tls", smtp_ca_file=ca_file)
    queue(nstores, "email", "ana@acme.example", "k-smtps")
    assert notify.dispatch(nstores).sent == 1 and box.messages[0]["To"] == "ana@acme.example"
    configure(nstores, port, smtp_tls="tls", smtp_ca_file=None)
    queue(nstores, "email", "ana@acme.example", "k-untrusted")
    assert notify.dispatch(nstores).failed == 1
    assert "certificate is not trusted" in notify.notifications(nstores.db, "acme", statuses=["failed"])[0].last_error


@pytest.mark.parametrize("reply, status", [("550 5.1.1 No such user", "failed"),
                                           ("450 4.2.1 Mailbox busy", "pending")])
def test_refused_recipients(nstores, smtp_server, reply, status):
    box, port = smtp_server()
    box.rcpt_reply = reply
    configure(nstores, port)
    queue(nstores, "email", "ghost@acme.example", "k")
    notify.dispatch(nstores)
    n = only(nstores)
    assert n.status == status and n.last_error == f"email to ghost@acme.example: recipient refused: SMTP {reply}"


def test_server_down_is_retried_and_then_delivered(nstores, smtp_server):
    from notify_helpers import free_port

    port = free_port()
    configure(nstores, port)
    queue(nstores, "email", "ana@acme.example", "k")
    assert notify.dispatch(nstores).retried == 1
    assert "ConnectionRefusedError" in only(nstores).last_error
    box, port = smtp_server()
    configure(nstores, port)
    assert notify.dispatch(nstores, now=clock(3600)).sent == 1 and len(box.messages) == 1


def test_smtp_settings_from_the_environment(monkeypatch, tmp_path):
    from workbench.settings import load_settings

    for k, v in {"HOST": "mail.example.com", "TLS": "tls", "USERNAME": "alerts", "PASSWORD": "pa55-XXXXsecretXXXX",
                 "FROM": "Workbench <alerts@example.com>"}.items():
        monkeypatch.setenv(f"WORKBENCH_SMTP_{k}", v)
    s = load_settings(home=tmp_path)
    assert (s.smtp_host, s.smtp_tls, s.smtp_port, s.smtp_username) == ("mail.example.com", "tls", None, "alerts")
    assert s.smtp_password.get_secret_value() == "pa55-XXXXsecretXXXX" and "XXXX" not in repr(s)
    monkeypatch.setenv("WORKBENCH_SMTP_TLS", "ssl")
    from workbench.errors import ConfigError

    with pytest.raises(ConfigError, match="smtp_tls"):
        load_settings(home=tmp_path)
