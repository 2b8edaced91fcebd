"""The mail generator: the same seed gives the same bytes everywhere; the mail parses cleanly and has the mix of
shapes it promises (HTML alternatives, attachments, non-ASCII, replies) in the proportions it declares."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

import pytest

from shadowstore.errors import InvalidParameterError
from shadowstore.mail import generate
from shadowstore.mail.formats import mbox_problem
from shadowstore.mail.generate import generate_messages

SEED = 2024
COUNT = 500


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return list(generate_messages(SEED, COUNT))


@pytest.fixture(scope="module")
def parsed(corpus: list[bytes]) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(raw) for raw in corpus]  # type: ignore[misc]


def digest(messages: list[bytes]) -> str:
    return hashlib.sha256(b"".join(hashlib.sha256(m).digest() for m in messages)).hexdigest()


def test_the_same_seed_gives_the_same_bytes(corpus: list[bytes]) -> None:
    assert list(generate_messages(SEED, 50)) == corpus[:50]
    assert list(generate_messages(SEED + 1, 50)) != corpus[:50]
    assert len(set(corpus)) == COUNT


def test_the_same_seed_gives_the_same_bytes_in_another_process(corpus: list[bytes]) -> None:
    code = (
        "import hashlib; from shadowstore.mail.generate import generate_messages as g; "
        f"ms = list(g({SEED}, 40)); print(hashlib.sha256(b''.join(hashlib.sha256(m).digest() for m in ms)).hexdigest())"
    )
    for hash_seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == digest(corpus[:40])


def test_every_message_parses_without_defects(parsed: list[EmailMessage]) -> None:
    for n, message in enumerate(parsed, start=1):
        for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
            assert message[header], f"message {n} has no {header}"
        for part in message.walk():
            assert not part.defects, f"message {n}: {part.get_content_type()}: {part.defects}"
            if part.get_content_maintype() == "text":
                assert isinstance(part.get_content(), str)
        assert parsedate_to_datetime(str(message["Date"])).tzinfo is not None


def test_dates_advance_from_the_start_and_mail_goes_to_the_recipient() -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(m) for m in generate_messages(5, 30, recipient="bob@example.org", start=start)]
    dates = [parsedate_to_datetime(str(m["Date"])) for m in messages]
    assert dates == sorted(dates)
    assert dates[0] > start
    assert {str(m["To"]) for m in messages} == {"bob@example.org"}


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def test_shapes_come_in_the_declared_proportions(parsed: list[EmailMessage]) -> None:
    types = [[p.get_content_type() for p in m.walk()] for m in parsed]
    attachments = [[p for p in m.walk() if p.get_content_disposition() == "attachment"] for m in parsed]
    assert abs(share(["text/html" in t for t in types]) - generate.HTML_SHARE) < 0.07
    assert abs(share([bool(a) for a in attachments]) - generate.ATTACHMENT_SHARE) < 0.06
    assert abs(share(["Cc" in m for m in parsed]) - generate.CC_SHARE) < 0.07
    assert abs(share(["In-Reply-To" in m for m in parsed]) - generate.REPLY_SHARE) < 0.07
    assert 0.05 < share([not str(m["Subject"]).isascii() for m in parsed]) < generate.NON_ASCII_SHARE + 0.07
    assert all(t[0] in ("text/plain", "multipart/alternative", "multipart/mixed") for t in types)


def test_attachments_carry_their_magic_numbers(parsed: list[EmailMessage]) -> None:
    magic = {"application/pdf": b"%PDF-", "image/png": b"\x89PNG\r\n\x1a\n", "application/zip": b"PK\x03\x04"}
    seen = set()
    for message in parsed:
        for part in message.walk():
            if part.get_content_disposition() == "attachment":
                data = part.get_content()
                assert isinstance(data, bytes)
                assert part.get_filename()
                kind = part.get_content_type()
                assert data.startswith(magic.get(kind, b"")), (kind, data[:8])
                seen.add(kind)
    assert {"application/pdf", "image/png"} <= seen


def test_sizes_range_from_hundreds_of_bytes_to_large(corpus: list[bytes]) -> None:
    sizes = sorted(len(m) for m in corpus)
    assert sizes[0] >= 300
    assert 1_000 < sizes[len(sizes) // 2] < 40_000
    assert sum(s > 50_000 for s in sizes) >= COUNT // 20
    assert abs(sum(s > 1 << 20 for s in sizes) / COUNT - generate.LARGE_SHARE) < 0.015
    assert sizes[-1] < 4 << 20


def test_non_ascii_is_encoded_as_mail_does_it(corpus: list[bytes], parsed: list[EmailMessage]) -> None:
    encoded = [m for m in corpus if b"Subject: =?utf-8?" in m]
    assert encoded
    for raw in corpus:
        head = raw.split(b"\n\n", 1)[0]
        assert head.isascii(), "headers are 7-bit; non-ASCII travels in encoded words"
    bodies = [p.get_content() for m in parsed for p in m.walk() if p.get_content_type() == "text/plain"]
    assert any(not body.isascii() for body in bodies)
    assert any(b"Content-Transfer-Encoding: quoted-printable" in m for m in corpus)
    assert any(b"Content-Transfer-Encoding: 8bit" in m for m in corpus)


def test_replies_refer_to_earlier_messages(parsed: list[EmailMessage]) -> None:
    seen: set[str] = set()
    for message in parsed:
        if "In-Reply-To" in message:
            assert str(message["In-Reply-To"]) in seen
            assert str(message["Subject"]).startswith("Re: ")
        seen.add(str(message["Message-ID"]))


def test_generated_mail_fits_an_mbox_byte_for_byte(corpus: list[bytes]) -> None:
    assert [n for n, raw in enumerate(corpus) if mbox_problem(raw, last=False)] == []


def test_attachment_base64_lines_are_wrapped(corpus: list[bytes]) -> None:
    for raw in corpus:
        assert max(len(line) for line in raw.split(b"\n")) <= 998
    sample = next(m for m in corpus if b"Content-Transfer-Encoding: base64" in m)
    body = sample.split(b"Content-Transfer-Encoding: base64\n\n", 1)[1].split(b"\n\n", 1)[0]
    assert base64.b64decode(body)


@pytest.mark.parametrize(("seed", "count"), [("1", 3), (1, -1), (True, 3), (1.5, 3)])
def test_bad_arguments_are_refused(seed: object, count: int) -> None:
    with pytest.raises(InvalidParameterError, match="seed must be an integer"):
        list(generate_messages(seed, count))  # type: ignore[arg-type]
