"""`mailgw render`, `mailgw dkim keygen` and `mailgw suppression` as an administrator runs them."""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
from pathlib import Path

from redis import Redis

from gateway.bounce_classes import BOUNCE_CLASSES
from tests.test_daemon import mailgw

ROOT = Path(__file__).resolve().parent.parent


def example_config(tmp_path: Path, redis_url: str | None = None) -> Path:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    config = tmp_path / "config" / "mailgw.toml"
    text = config.read_text(encoding="utf-8").replace(
        "# state_dir = ", f'state_dir = "{tmp_path / "state"}"\n# '
    )
    if redis_url:
        text = text.replace('# url = ""', f'url = "{redis_url}"')
    config.write_text(text, encoding="utf-8")
    return config


def test_render_prints_a_signed_notification_without_sending_it(tmp_path: Path) -> None:
    config = example_config(tmp_path)
    result = mailgw(config, "render", "--account", "atelier-elodie", "--kind", "reminder")
    assert result.returncode == 0, result.stderr
    message = email.message_from_string(result.stdout, policy=email.policy.default)
    assert message["From"].addresses[0].display_name == "L'Atelier d'Élodie & Fils"
    assert len(message.get_all("DKIM-Signature")) == 2
    assert "publish this DNS record" in result.stderr  # the keys were created for it
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    context = tmp_path / "context.json"
    context.write_text(json.dumps({"appointment": {"id": "x"}}))
    bad = mailgw(config, "render", "--account", "atelier-elodie", "--kind", "confirmation",
                 "--data", str(context), "--to", "zoe@example.com")  # fmt: skip
    assert bad.returncode == 1
    assert "context for confirmation: missing field 'appointment.calendar'" in bad.stderr

    empty = mailgw(config, "render", "--account", "atelier-elodie", "--kind", "follow_up")
    assert "renders empty" in empty.stdout


def test_render_runs_an_account_s_own_templates_within_their_limits(tmp_path: Path) -> None:
    config = example_config(tmp_path)
    own = tmp_path / "config" / "templates" / "atelier-elodie" / "fr"
    own.mkdir(parents=True)
    (own / "reminder.txt").write_text("Bonjour {{ client.name }} !\n")
    result = mailgw(config, "render", "--account", "atelier-elodie", "--kind", "reminder")
    assert result.returncode == 0, result.stderr
    message = email.message_from_string(result.stdout, policy=email.policy.default)
    text = message.get_body(("plain",))
    assert text is not None and text.get_content() == "Bonjour Zoé Martin !\n"

    (own / "reminder.html").write_text("{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}")
    hostile = mailgw(config, "render", "--account", "atelier-elodie", "--kind", "reminder")
    assert (hostile.returncode, hostile.stderr.splitlines()[-1]) == (
        1,
        "mailgw: template reminder.html of account atelier-elodie: output over 1 MB",
    )


def test_dkim_keygen_writes_the_key_and_prints_its_record(tmp_path: Path) -> None:
    config = example_config(tmp_path)
    args = ("dkim", "keygen", "--domain", "acuityscheduling.com", "--selector", "mailgw-ed25519",
            "--algorithm", "ed25519")  # fmt: skip
    first = mailgw(config, *args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(
        'mailgw-ed25519._domainkey.acuityscheduling.com. IN TXT ( "v=DKIM1; k=ed25519; p='
    )
    rsa = mailgw(config, "dkim", "keygen", "--domain", "acuityscheduling.com",
                 "--selector", "mailgw-rsa")  # fmt: skip
    strings = re.findall(r'"([^"]*)"', rsa.stdout)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)  # DNS's 255 per string
    assert "".join(strings).startswith("v=DKIM1; k=rsa; p=")
    key = tmp_path / "state/dkim/acuityscheduling.com/mailgw-ed25519.key"
    assert key.stat().st_mode & 0o777 == 0o600
    again = mailgw(config, *args)
    assert again.stdout == first.stdout
    assert "kept the existing key" in again.stderr
    wrong = mailgw(config, *args[:-1], "rsa")
    assert wrong.returncode == 1
    assert "is configured as ed25519" in wrong.stderr


def test_suppression_add_list_remove(tmp_path: Path, redis_url: str) -> None:
    config = example_config(tmp_path, redis_url)
    added = mailgw(config, "suppression", "add", "Zoe@Example.com", "--detail", "asked by phone")
    assert added.returncode == 0, added.stderr
    optout = mailgw(config, "suppression", "add", "paul@example.com", "--reason", "unsubscribe",
                    "--account", "atelier-elodie")  # fmt: skip
    assert optout.returncode == 0, optout.stderr
    listed = [
        json.loads(line) for line in mailgw(config, "suppression", "list").stdout.splitlines()
    ]
    assert [(e["address"], e["reason"]) for e in listed] == [("Zoe@Example.com", "manual")]
    per_account = mailgw(config, "suppression", "list", "--account", "atelier-elodie").stdout
    assert '"paul@example.com"' in per_account
    assert mailgw(config, "suppression", "remove", "zoe@example.com").returncode == 0
    gone = mailgw(config, "suppression", "remove", "zoe@example.com")
    assert gone.returncode == 1 and "is not suppressed" in gone.stderr
    needs_account = mailgw(config, "suppression", "add", "a@example.com", "--reason", "complaint")
    assert "needs --account" in needs_account.stderr


def test_render_prints_the_text_message_and_its_length(tmp_path: Path) -> None:
    config = example_config(tmp_path)
    args = ("render", "--account", "atelier-elodie", "--kind", "reminder", "--channel", "sms")
    result = mailgw(config, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Rappel : Coupe femme le ")
    assert result.stdout.rstrip().endswith("avec Élodie, L'Atelier d'Élodie & Fils.")
    assert re.search(r"\(\d+ characters, GSM-7, 1 part\(s\)\)", result.stderr)
    refused = mailgw(config, *args[:-3], "confirmation", "--channel", "sms")
    assert refused.returncode == 1
    assert "there is no text message for 'confirmation' notifications" in refused.stderr


def test_suppression_of_a_phone_number_is_an_sms_opt_out(tmp_path: Path, redis_url: str) -> None:
    config = example_config(tmp_path, redis_url)
    added = mailgw(config, "suppression", "add", "+33612345678", "--detail", "asked by phone")
    assert added.stdout == "added +33612345678; 0 waiting text(s) dropped\n", added.stderr
    listed = [
        json.loads(line) for line in mailgw(config, "suppression", "list").stdout.splitlines()
    ]
    assert [(e["number"], e["detail"]) for e in listed] == [("+33612345678", "asked by phone")]
    bad = mailgw(config, "suppression", "add", "+33 6 12")
    assert bad.returncode == 1 and "is not an E.164 number" in bad.stderr
    assert mailgw(config, "suppression", "remove", "+33612345678").returncode == 0
    again = mailgw(config, "suppression", "remove", "+33612345678")
    assert again.returncode == 1 and "has not opted out" in again.stderr


def test_a_long_replay_shows_its_progress(tmp_path: Path, redis_url: str) -> None:
    from redis import Redis

    config = example_config(tmp_path, redis_url)
    redis = Redis.from_url(redis_url, decode_responses=True)
    with redis.pipeline(transaction=False) as pipe:
        for n in range(1001):
            job = json.dumps({"v": 1, "id": f"j{n}", "kind": "email.send"})
            pipe.xadd("mailgw:dead", {"job": job, "id": f"j{n}", "reason": "x", "attempts": 1})
        pipe.execute()
    replayed = mailgw(config, "dead-letters", "replay")
    assert replayed.returncode == 0, replayed.stderr
    assert len(replayed.stdout.splitlines()) == 1001
    assert replayed.stderr.splitlines() == [
        "replayed 500 of 1001",
        "replayed 1000 of 1001",
        "replayed 1001 of 1001",
    ]
    assert redis.xlen("mailgw:jobs") == 1001 and redis.xlen("mailgw:dead") == 0
    redis.close()


def test_history_prints_an_appointment_s_entries(tmp_path: Path, redis_url: str) -> None:
    config = example_config(tmp_path, redis_url)
    client = Redis.from_url(redis_url, decode_responses=True)
    entry = {"at": "2026-11-23T09:00:00Z", "kind": "reminder", "status": "skipped", "reason": "é"}
    client.xadd("mailgw:history:appt-7", {"event": json.dumps(entry, ensure_ascii=False)})
    shown = mailgw(config, "history", "appt-7")
    assert shown.returncode == 0, shown.stderr
    [printed] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert printed.pop("entry").endswith("-0")
    assert printed == entry
    unknown = mailgw(config, "history", "appt-8")
    assert unknown.returncode == 1 and "no history for appointment 'appt-8'" in unknown.stderr


def test_suppression_show_list_export_and_import(tmp_path: Path, redis_url: str) -> None:
    config = example_config(tmp_path, redis_url)
    client = Redis.from_url(redis_url, decode_responses=True)
    # As 0.1 wrote them: no class, no count, no expiry, "at" for when.
    old = {"address": "old@example.com", "reason": "hard_bounce", "detail": "550 5.1.1 gone",
           "at": "2025-03-01T10:00:00.000Z", "account": "atelier-elodie"}  # fmt: skip
    client.hset("mailgw:suppressed", "old@example.com", json.dumps(old))
    client.hset("mailgw:suppressed", "expired@example.com", json.dumps(
        {**old, "address": "expired@example.com", "bounce_class": "bad_domain",
         "expires_at": "2025-04-01T00:00:00.000Z"}
    ))  # fmt: skip
    mailgw(config, "suppression", "add", "old@example.com", "--reason", "unsubscribe",
           "--account", "atelier-elodie")  # fmt: skip

    shown = mailgw(config, "suppression", "show", "OLD@example.com")
    assert shown.returncode == 0, shown.stderr
    hard, opt_out = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (hard["reason"], hard["bounce_class"], hard["first_seen"], hard["count"]) == (
        "hard_bounce", None, "2025-03-01T10:00:00.000Z", 1
    )  # fmt: skip
    assert hard["expires_at"] is None  # kept until removed, as 0.1 kept it
    assert (opt_out["reason"], opt_out["account"]) == ("unsubscribe", "atelier-elodie")
    # An expired entry blocks nothing and is not listed.
    gone = mailgw(config, "suppression", "show", "expired@example.com")
    assert gone.returncode == 1 and "is not suppressed" in gone.stderr

    moved = tmp_path / "moved.csv"
    moved.write_text(
        "address,reason,class\n"
        "Paul@Example.com,,invalid_recipient\n"
        "lea@example.com,,\n"
        "nodomain@example.net,hard_bounce,bad_domain\n",
        encoding="utf-8",
    )
    imported = mailgw(config, "suppression", "import", str(moved))
    assert imported.stdout == "imported 3 entries\n", imported.stderr
    listed = mailgw(config, "suppression", "list", "--class", "invalid_recipient").stdout
    [paul] = [json.loads(line) for line in listed.splitlines()]
    assert (paul["address"], paul["reason"], paul["count"]) == (
        "Paul@Example.com", "hard_bounce", 1
    )  # fmt: skip
    assert paul["expires_at"] > paul["first_seen"]  # a year: the class's default
    everything = mailgw(config, "suppression", "list").stdout
    assert sorted(json.loads(line)["address"] for line in everything.splitlines()) == [
        "Paul@Example.com", "lea@example.com", "nodomain@example.net", "old@example.com"
    ]  # fmt: skip

    exported = tmp_path / "export.csv"
    done = mailgw(config, "suppression", "export", str(exported))
    assert done.stdout == f"exported 5 entries to {exported}\n", done.stderr
    rows = exported.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "address,reason,class,account,detail,first_seen,last_seen,count,expires_at"
    assert any(r.startswith("old@example.com,unsubscribe,,atelier-elodie,") for r in rows)
    assert (
        mailgw(config, "suppression", "export", "--account", "atelier-elodie").stdout.count("\n")
        == 2
    )
    # What was exported comes back as it was.
    client.delete("mailgw:suppressed", "mailgw:optout:atelier-elodie")
    assert mailgw(config, "suppression", "import", str(exported)).stdout == "imported 5 entries\n"
    again = tmp_path / "again.csv"
    mailgw(config, "suppression", "export", str(again))
    assert again.read_text(encoding="utf-8") == exported.read_text(encoding="utf-8")

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "address,class,count,first_seen\n"
        "ok@example.com,,,\n"
        "x@example.com,no_such_class,,\n"
        "not an address,,,\n"
        "y@example.com,,0,\n"
        "z@example.com,,,yesterday\n",
        encoding="utf-8",
    )
    refused = mailgw(config, "suppression", "import", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-5:] == [
        "mailgw: nothing was imported:",
        f"{bad}:3: class 'no_such_class' is none of " + ", ".join(BOUNCE_CLASSES),
        f"{bad}:4: 5.1.3 'not an address' is not a valid address",
        f"{bad}:5: count '0' is not a whole number above 0",
        f"{bad}:6: first_seen 'yesterday' is not a date and time (RFC 3339)",
    ]
    assert "ok@example.com" not in mailgw(config, "suppression", "list").stdout
    assert (
        "--class is for list and export"
        in mailgw(config, "suppression", "show", "x@example.com", "--class", "bad_domain").stderr
    )
    client.close()
