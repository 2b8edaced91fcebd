"""Realistic mail, made deterministically, for demos, tests and benchmarks.

``generate_messages(seed, count)`` yields the raw bytes of ``count`` messages: a circle of correspondents
writing to one recipient over days, with Cc and replies (In-Reply-To, References, quoted text), plain text or
text+HTML alternatives, bodies from a few hundred bytes to ~100 KiB, attachments (PDF, PNG, ZIP, binary;
base64 of pseudo-random bytes behind the right magic numbers) and, now and then, a large one of 1-2 MiB,
and non-ASCII names, subjects (encoded words) and bodies (UTF-8, 8bit or quoted-printable).

Why it is safe to build bytes by hand: every choice comes from one ``random.Random(seed)`` and every encoder
used (base64, quopri, email.header) is deterministic, so the same seed gives the same bytes on every machine and
Python run. No body line starts with "From ", so the messages also survive an mbox export byte for byte.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import quopri
import random
import unicodedata
from collections.abc import Iterator
from email.header import Header
from email.utils import format_datetime

from shadowstore.errors import InvalidParameterError

HTML_SHARE = 0.35  # text/plain + text/html alternatives
ATTACHMENT_SHARE = 0.15  # one to three attachments
NON_ASCII_SHARE = 0.2  # non-ASCII subject, names and body
CC_SHARE = 0.3
REPLY_SHARE = 0.3  # of the messages after the first
LARGE_SHARE = 0.02  # one attachment of 1-2 MiB (these are among the messages with attachments)
START = dt.datetime(2024, 3, 4, 8, 0, tzinfo=dt.UTC)


def _words(text: str) -> list[str]:
    return text.split()


_FIRST = _words("Alice Bob Carol David Erin Frank Grace Heidi Ivan Judy Mallory Oscar Peggy Rupert Sybil Trent Victor")
_FIRST_INTL = ["José", "Zoë", "Jürgen", "Søren", "François", "Åsa", "Łukasz", "Ünal", "Ana María", "Chloé"]
_LAST = _words("Smith Jones Taylor Brown Wilson Evans Thomas Roberts Walker Wright Müller García Nguyen Novák Dubois")
_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "corp.example"]
_WORDS = _words("""the a we to and of in for on with about this that our your next week meeting report budget plan draft
    review server backup store log checkpoint restore team project client invoice schedule update please thanks
    could would should will can need check send attached notes figures quarter results deadline monday friday
    morning afternoon call agenda item issue fix release version test change approve from after before until
    today tomorrow soon really quite only also still again already maybe perhaps numbers storage group database
    offline online disk volume snapshot copy full incremental""")
_WORDS_INTL = _words(
    "café naïve Größe Zürich façade résumé smörgåsbord déjà-vu Ærø São-Paulo Kraków Москва 東京 Ελλάδα"
)
_TOPICS = [
    *("Quarterly report", "Backup schedule", "Meeting notes", "Budget draft", "Server migration", "Invoice"),
    *("Release plan", "Lunch on Friday?", "Restore test results", "Holiday rota", "Disk space", "Agenda"),
]
_TOPICS_INTL = ["Réunion de lundi", "Größe der Datenbank", "Café à 10 h ?", "Отчёт за квартал", "会議の議事録"]
_ATTACHMENTS = [  # (name pattern, content type, magic bytes)
    ("report-{n}.pdf", "application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
    ("photo-{n}.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ("archive-{n}.zip", "application/zip", b"PK\x03\x04\x14\x00\x00\x00"),
    ("data-{n}.bin", "application/octet-stream", b""),
]


def generate_messages(
    seed: int, count: int, *, recipient: str = "user01@example.com", start: dt.datetime = START
) -> Iterator[bytes]:
    """Yield ``count`` messages to ``recipient``, dated from ``start`` on, all made from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not isinstance(count, int) or count < 0:
        raise InvalidParameterError(f"the seed must be an integer and the count >= 0 (got {seed!r}, {count!r})")
    rng = random.Random(seed)
    people = [_person(rng) for _ in range(24)]
    history: list[tuple[str, str, str]] = []  # (message id, subject, sender) of earlier messages
    when = start
    for n in range(1, count + 1):
        when += dt.timedelta(seconds=rng.randint(60, 6 * 3600))
        yield _message(rng, n, when, people, recipient, history)


def _person(rng: random.Random) -> tuple[str, str]:
    intl = rng.random() < NON_ASCII_SHARE
    first = rng.choice(_FIRST_INTL if intl else _FIRST)
    last = rng.choice(_LAST)
    plain = unicodedata.normalize("NFKD", f"{first}.{last}".lower().replace(" ", "-"))
    local = "".join(c for c in plain if c.isascii() and (c.isalnum() or c in ".-")).strip(".-")
    return f"{first} {last}", f"{local or 'user'}@{rng.choice(_DOMAINS)}"


def _address(person: tuple[str, str]) -> str:
    name, address = person
    if name.isascii():
        return f"{name} <{address}>"
    return f"{Header(name, 'utf-8').encode()} <{address}>"


def _message(
    rng: random.Random,
    n: int,
    when: dt.datetime,
    people: list[tuple[str, str]],
    recipient: str,
    history: list[tuple[str, str, str]],
) -> bytes:
    intl = rng.random() < NON_ASCII_SHARE
    sender = rng.choice(people)
    reply = history[rng.randrange(len(history))] if history and rng.random() < REPLY_SHARE else None
    topic = rng.choice(_TOPICS_INTL if intl else _TOPICS)
    subject = f"Re: {reply[1].removeprefix('Re: ')}" if reply else f"{topic} ({n})"
    message_id = f"<{rng.getrandbits(64):016x}.{n}@{sender[1].split('@')[1]}>"
    zone = dt.timezone(dt.timedelta(minutes=rng.choice([-300, -240, 0, 60, 120, 330, 540])))
    headers = [f"From: {_address(sender)}", f"To: {recipient}"]
    if rng.random() < CC_SHARE:
        headers.append("Cc: " + ", ".join(_address(rng.choice(people)) for _ in range(rng.randint(1, 3))))
    headers += [
        "Subject: " + (subject if subject.isascii() else Header(subject, "utf-8", header_name="Subject").encode()),
        f"Date: {format_datetime(when.astimezone(zone))}",
        f"Message-ID: {message_id}",
    ]
    if reply:
        headers += [f"In-Reply-To: {reply[0]}", f"References: {reply[0]}"]
    headers.append("MIME-Version: 1.0")
    history.append((message_id, subject, sender[0]))
    text = _text(rng, sender[0], reply, intl)
    body = _alternative(rng, text, intl) if rng.random() < HTML_SHARE else _plain(text, intl)
    if rng.random() < ATTACHMENT_SHARE:
        large = rng.random() < LARGE_SHARE / ATTACHMENT_SHARE  # why divided: LARGE_SHARE is of all messages
        parts = [_attachment(rng, n, i, intl, large and i == 0) for i in range(rng.randint(1, 3))]
        body = _multipart(rng, "mixed", [body, *parts])
    return ("\n".join(headers) + "\n").encode() + body


def _size(rng: random.Random) -> int:
    """A body size: mostly small, sometimes tens of KiB, now and then ~100 KiB (log-uniform in each band)."""
    low, high = rng.choices([(300, 8192), (8192, 60_000), (60_000, 100_000)], weights=[70, 25, 5])[0]
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def _sentence(rng: random.Random, intl: bool) -> str:
    words = [rng.choice(_WORDS_INTL if intl and rng.random() < 0.15 else _WORDS) for _ in range(rng.randint(5, 16))]
    while words[0] == "from":  # why: a line starting "From " would split the message in an mbox
        words[0] = rng.choice(_WORDS)
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice([".", ".", ".", "?", "!"])


def _text(rng: random.Random, sender: str, reply: tuple[str, str, str] | None, intl: bool) -> str:
    target = _size(rng)
    lines = [f"Hi {rng.choice(_FIRST)},", ""]
    size = 0
    while size < target:
        paragraph = _wrap(" ".join(_sentence(rng, intl) for _ in range(rng.randint(2, 6))))
        lines += [*paragraph, ""]
        size += sum(len(line) + 1 for line in paragraph) + 1
    lines += ["Best,", sender.split()[0]]
    if reply:
        quoted = _wrap(" ".join(_sentence(rng, intl) for _ in range(rng.randint(1, 4))), 70)
        lines += ["", f"On an earlier day, {reply[2]} wrote:", *(f"> {line}" for line in quoted)]
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 72) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def _plain(text: str, intl: bool, subtype: str = "plain") -> bytes:
    if not intl and text.isascii():
        return f'Content-Type: text/{subtype}; charset="us-ascii"\nContent-Transfer-Encoding: 7bit\n\n{text}'.encode()
    if subtype == "plain" and len(text) % 2:  # both encodings occur: the length decides, so no draw is spent
        return f'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n{text}'.encode()
    encoded = quopri.encodestring(text.encode())
    head = f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
    return head.encode() + encoded


def _alternative(rng: random.Random, text: str, intl: bool) -> bytes:
    paragraphs = [p.replace("\n", " ") for p in text.split("\n\n") if p.strip()]
    escaped = [p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for p in paragraphs]
    html = '<html><head><meta charset="utf-8"></head><body>\n'
    html += "".join("<p>" + "\n".join(_wrap(p, 76)) + "</p>\n" for p in escaped) + "</body></html>\n"
    return _multipart(rng, "alternative", [_plain(text, intl), _plain(html, intl, "html")])


def _attachment(rng: random.Random, n: int, i: int, intl: bool, large: bool) -> bytes:
    pattern, content_type, magic = rng.choice(_ATTACHMENTS)
    name = pattern.format(n=f"{n}-{i + 1}")
    size = rng.randint(1 << 20, 2 << 20) if large else int(math.exp(rng.uniform(math.log(2048), math.log(200_000))))
    data = magic + rng.randbytes(max(0, size - len(magic)))
    if intl:
        name = "Übersicht-" + name
        disposition = f"attachment; filename*=utf-8''{_percent(name)}"
    else:
        disposition = f'attachment; filename="{name}"'
    head = (
        f'Content-Type: {content_type}; name="{name if name.isascii() else Header(name, "utf-8").encode()}"\n'
        f"Content-Disposition: {disposition}\nContent-Transfer-Encoding: base64\n\n"
    )
    return head.encode() + base64.encodebytes(data)


def _percent(text: str) -> str:
    return "".join(chr(b) if chr(b).isalnum() or chr(b) in "-._" else f"%{b:02X}" for b in text.encode())


def _multipart(rng: random.Random, subtype: str, parts: list[bytes]) -> bytes:
    boundary = f"=_{rng.getrandbits(64):016x}"  # random hex: never in the parts' own lines
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\n\nThis is a multi-part message in MIME format.\n'
    out = [head.encode()]
    for part in parts:
        out += [f"\n--{boundary}\n".encode(), part if part.endswith(b"\n") else part + b"\n"]
    out.append(f"\n--{boundary}--\n".encode())
    return b"".join(out)
