"""What the names of storage groups, stores and store files may be, and which names and folders the server
home keeps for itself.

A storage group's name is shown on one line and its folders are made in the home under it, so a name is
printable, has no '/', no blanks at its ends, is not '.' or '..', and is none of the home's own entries: 'sg
create events' once put a group's logs into the event log's folder. Storage groups already named so still
load; these rules apply when a group, a store or a folder is chosen.
"""

from __future__ import annotations

import os

from shadowstore.config import CONFIG_NAME, MAX_NAME, PREVIOUS_NAME, RECOVERY_SG, HomeConfig
from shadowstore.errors import InvalidParameterError

# What the server home holds beside its storage groups' folders, with what each is. A storage group may not be
# called by one of these names (nor by the backup target's, when that is a folder in the home): its folders are
# made in the home under its name, so 'sg create events' put its logs into the event log's folder. Written here
# rather than imported from the modules that use them, since several of those import this one;
# tests/test_config.py checks that every such constant is listed.
HOME_ENTRIES: dict[str, str] = {
    CONFIG_NAME: "the configuration file",
    PREVIOUS_NAME: "the configuration before the last change",
    "events": "the event log's folder",  # home.EVENTS_DIR
    "reports": "the folder of backup reports and crash reports",  # backup/report.py, cli/main.py
    "backups": "the folder of the default backup target",  # what 'init' sets backup.target to
    "moves": "the folder of 'sg move' journals",  # tools/movejournal.MOVES_FOLDER
    "doctor": "the folder of 'doctor' journals",  # tools/doctorplan.DOCTOR_FOLDER
    "quarantine": "the name of the folders that keep set-aside files",  # quarantine.QUARANTINE
    "quarantine-places.json": "the list of quarantine folders left behind",  # quarantine.PLACES
    "home-id.lock": "the lock taken while the home id is made",  # home.py
    "service.lock": "the Information Store service's lock",  # service/homefiles.LOCK_NAME
    "service.json": "the Information Store service's address file",  # service/homefiles.INFO_NAME
    "service.sock": "the Information Store service's socket",  # service/server.SOCKET_NAME
}


_NAME_HINT = f"choose a name of 1-{MAX_NAME} printable characters without '/' and without blanks at its ends"


def validate_name(name: str, what: str) -> str:
    """``name`` as the name of a ``what`` (a storage group, a store). Raises InvalidParameterError saying what
    is wrong with it: a name is shown on one line and may become a folder's name."""
    problem = _name_problem(name)
    if problem:
        raise InvalidParameterError(f"{what} name {name!r} {problem}", hint=_NAME_HINT)
    return name


def _name_problem(name: str) -> str | None:
    if not name.strip():
        return "is empty" if not name else "is only blanks"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    if not name.isprintable():
        return "holds a character that cannot be printed (a line break, a tab or another control character)"
    if "/" in name:
        return "holds a '/'"
    if name != name.strip():
        return "starts or ends with a blank"
    if name in (".", ".."):
        return "is a folder's name for itself or its parent"
    return None


def validate_storage_group_name(name: str, config: HomeConfig) -> str:
    """``name`` as a new storage group's name in the home of ``config``: validate_name's rules, no leading dot
    (hidden, as the home's temporary files are), and none of the names of the home's own files and folders
    (HOME_ENTRIES, and the backup target's when it is a folder in the home). Raises InvalidParameterError."""
    validate_name(name, "storage group")
    if name.casefold() == RECOVERY_SG.casefold():
        # why: a restore into the recovery group would take this group over, configuration and all
        raise InvalidParameterError(
            f"{RECOVERY_SG!r} is the name restores into the recovery storage group use",
            hint="choose another name; 'shadowstore restore run --into-recovery-group' makes that group itself",
        )
    if name.startswith("."):
        raise InvalidParameterError(
            f"storage group name {name!r} starts with a dot (its folder would be hidden)",
            hint="choose a name that starts with a letter or a digit",
        )
    taken = _home_entries(config).get(name.casefold())
    if taken is not None:
        raise InvalidParameterError(
            f"storage group name {name!r} is the name of {taken} in the server home, where the storage group's "
            "folder would go",
            hint=f"choose another name; the home keeps these for itself: {', '.join(_home_entries(config))}",
        )
    return name


def _home_entries(config: HomeConfig) -> dict[str, str]:
    """HOME_ENTRIES, and the top folder of the backup target when it is in the home; keys casefolded (why: on
    a file system that ignores case, as a home on a CIFS share, 'Events' is the event log's folder)."""
    entries = {name.casefold(): what for name, what in HOME_ENTRIES.items()}
    target = str(config.settings.get("backup", {}).get("target", "backups"))
    if "://" not in target and not target.startswith("/"):
        top = os.path.normpath(target).partition("/")[0]
        if top not in (".", ".."):
            entries.setdefault(top.casefold(), "the folder of the backup target (backup.target)")
    return entries


def check_home_folder(home: str, config: HomeConfig, folder: str, option: str) -> str:
    """``folder`` (``option``'s value; relative ones are taken from ``home``) if it is not one of the home's own
    folders or inside one (HOME_ENTRIES, the backup target): logs in the event log's folder, or stores in the
    backup target's, would be read as what that folder holds. Raises InvalidParameterError."""
    root = os.path.realpath(home)
    inside = os.path.relpath(os.path.realpath(os.path.join(home, folder)), root)
    top = inside.partition("/")[0]
    if top in (".", ".."):
        return folder  # the home itself, or a folder outside it: none of the home's own
    taken = _home_entries(config).get(top.casefold())
    if taken is not None:
        raise InvalidParameterError(
            f"{option} {folder!r} is {taken} of the server home ({os.path.join(root, top)}), or inside it",
            hint="choose a folder of the storage group's own",
        )
    return folder


def validate_store_file(file: str) -> str:
    """``file`` as a store's file name (``store create --file``): a plain, printable name ending in .edb that
    does not start with a dot (the temporaries of io/replace.py do) and is not ESE's temporary database.
    Raises InvalidParameterError."""
    stem = file[: -len(".edb")] if file.endswith(".edb") else None
    if not stem or "/" in file or not file.isprintable() or file.startswith(".") or file.strip() != file:
        raise InvalidParameterError(
            f"store file name {file!r} must be a plain name ending in .edb",
            hint="for example priv2.edb: printable characters, no '/', not starting with a dot or a blank",
        )
    if file.casefold() == "tmp.edb":
        raise InvalidParameterError(
            "store file name 'tmp.edb' is the name of ESE's temporary database", hint="for example priv2.edb"
        )
    return file
