"""Email, the third alert channel: SMTP with STARTTLS against aiosmtpd on loopback (a self-signed certificate
made by the test, trusted through alerts.email.ca_file), a login from the environment, never in clear, and
the password kept out of everything a delivery returns or logs."""

from __future__ import annotations

import logging

import pytest
from support.configs import small_database, write_config
from support.smtp_server import PASSWORD, USER, SmtpServer, free_port, self_signed_certificate
from test_alerts import partial_run

from patina_assets.config import ConfigError
from patina_assets.notifications import EMAIL, Channels, Outbox, email_message, pending, send_email

ENV = {"PATINA_SMTP_USER": USER, "PATINA_SMTP_PASSWORD": PASSWORD}


def email_alerts(tmp_path, port: int, **extra):
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "from": "patina@example.com",
        "to": ["ops@example.com", "cto@example.com"],
        "username_env": "PATINA_SMTP_USER",
        "password_env": "PATINA_SMTP_PASSWORD",
        "ca_file": str(tmp_path / "smtp-cert.pem"),
        **extra,
    }
    db = tmp_path / "a.sqlite"
    if not db.exists():
        small_database(db, 5)
    return write_config(tmp_path, [{"name": "groveauth", "source": str(db)}], alerts={"email": settings}).alerts


def email_config(tmp_path, smtp: SmtpServer, **extra):
    return email_alerts(tmp_path, smtp.port, **extra).email


def test_an_alert_is_sent_over_starttls_with_the_login_from_the_environment(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with SmtpServer(tmp_path) as smtp:
        settings = email_config(tmp_path, smtp)
        body = email_message(partial_run())
        delivery = send_email(settings, body, ENV)
        assert delivery.delivered, delivery.reason
        (message,) = smtp.messages
    assert smtp.tls == [True] and smtp.logins == [USER]
    assert message["Subject"] == "Patina Backup Partially Failed"
    assert message["From"] == "patina@example.com" and message["To"] == "ops@example.com, cto@example.com"
    text = message.get_content()
    assert "Databases: 2/3 successful" in text and "Failed: scout-db: Timeout after 30s" in text
    assert "Job ID: 550e8400-e29b-41d4-a716-446655440000" in text
    assert PASSWORD not in caplog.text and PASSWORD not in repr(delivery)


def test_no_starttls_no_send_and_a_wrong_login_says_which_variables(tmp_path):
    with SmtpServer(tmp_path, starttls=False) as plain:
        settings = email_config(tmp_path, plain)
        refused = send_email(settings, email_message(partial_run()), ENV)
        assert not refused.delivered and plain.messages == [] and plain.logins == []
        assert refused.reason == "the mail server does not offer STARTTLS: Patina never sends in clear"
    with SmtpServer(tmp_path) as smtp:
        settings = email_config(tmp_path, smtp)
        wrong = send_email(settings, email_message(partial_run()), {**ENV, "PATINA_SMTP_PASSWORD": "nope-" + PASSWORD})
        assert not wrong.delivered and not wrong.rejected and smtp.messages == []  # it waits: the login can be fixed
        assert wrong.reason == "SMTP 535: the login was refused (check $PATINA_SMTP_USER / $PATINA_SMTP_PASSWORD)"
        unset = send_email(settings, email_message(partial_run()), {})
        assert not unset.delivered and "PATINA_SMTP_USER" in unset.reason and PASSWORD not in unset.reason


def test_the_outbox_holds_an_email_until_the_server_is_up_then_sends_it_once(tmp_path):
    port = free_port()
    self_signed_certificate(tmp_path)  # the server's certificate is known before it is up
    channels = Channels(email_alerts(tmp_path, port, timeout_seconds=2), env=ENV)
    outbox = Outbox()
    for message in pending("run-1", partial_run(), sorted(channels.targets()), redact=False, now=1000.0):
        outbox.add(message)
    assert [m.destination for m in outbox.messages] == [EMAIL]  # no webhook variables in this environment
    down = outbox.flush(channels.targets(), now=1000.0, send=channels.send, missing=channels.missing)
    assert down.failing == {EMAIL: "could not send (ConnectionRefusedError)"} and len(outbox) == 1
    with SmtpServer(tmp_path, port=port) as smtp:  # the server comes back
        up = outbox.flush(channels.targets(), now=1030.0, send=channels.send, missing=channels.missing)
        assert up.delivered == ["run-1@email"] and len(smtp.messages) == 1
        assert (
            outbox.flush(channels.targets(), now=1060.0, send=channels.send).delivered == [] and len(smtp.messages) == 1
        )


def test_email_settings_are_validated_and_never_hold_the_password(tmp_path):
    db = str(small_database(tmp_path / "a.sqlite", 5))
    with pytest.raises(ConfigError) as caught:
        write_config(
            tmp_path,
            [{"name": "groveauth", "source": db}],
            alerts={
                "email": {
                    "host": "smtp.example.com",
                    "from": "not an address",
                    "to": [],
                    "username_env": "PATINA_SMTP_USER",
                    "password": "hunter2",
                }
            },
        )
    text = str(caught.value)
    assert "alerts.email.password: looks like a secret value" in text and "password_env" in text
    assert "alerts.email.from" in text and "alerts.email.to" in text
    with pytest.raises(ConfigError, match="a login needs both username_env and password_env"):
        write_config(
            tmp_path,
            [{"name": "groveauth", "source": db}],
            alerts={
                "email": {
                    "host": "smtp.example.com",
                    "from": "p@example.com",
                    "to": "o@example.com",
                    "username_env": "PATINA_SMTP_USER",
                }
            },
        )
    settings = write_config(
        tmp_path,
        [{"name": "groveauth", "source": db}],
        alerts={"email": {"host": "smtp.example.com", "from": "p@example.com", "to": "o@example.com"}},
    ).alerts.email
    assert (settings.port, settings.to, settings.credentials({})) == (587, ("o@example.com",), None)
