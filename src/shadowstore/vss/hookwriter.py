"""A writer made of two commands, so that another application on the same volume takes part in the snapshot:
``pre_freeze`` quiesces it (flush, pause writes), ``post_thaw`` resumes it. Configured in shadowstore.toml:

    [[vss.hook]]
    name = "mail filter"
    pre_freeze = "/usr/local/bin/filter-pause"
    post_thaw = "/usr/local/bin/filter-resume"
    timeout = 30                       # seconds each command may take (default 30)
    paths = ["/srv/filter/state.db"]   # files the snapshot must hold for it (optional)

A command that fails or outlives its timeout vetoes the job (killed at the timeout); ``post_thaw`` runs after any
``pre_freeze`` that ran, also when the job fails or is aborted, so the application never stays paused. The
commands run where the writers live: in the service when it runs (service/vsshost.py), so a backup program
killed between them cannot leave the application paused (the job's lease or freeze deadline resumes it); in the
backup program otherwise.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping
from typing import Any

from shadowstore.config import CONFIG_NAME, parse_seconds
from shadowstore.errors import InvalidParameterError
from shadowstore.vss.states import WriterFailure
from shadowstore.vss.writer import (
    RESTORE_CUSTOM,
    SOURCE_OTHER,
    USAGE_USER_DATA,
    Component,
    FileGroup,
    Writer,
    WriterMetadata,
    WriterVeto,
)

DEFAULT_HOOK_SECONDS = 30.0


class CommandHookWriter(Writer):
    writer_id = "0c9e4b1a-7d52-4c8e-b3f6-91a2d5e7c340"

    def __init__(self, name: str, pre_freeze: str | None, post_thaw: str | None, timeout: float, paths: list[str]):
        super().__init__()
        self.name = f"ShadowStore Command Hook Writer ({name})"
        self.hook = name
        self.pre_freeze_command = pre_freeze
        self.post_thaw_command = post_thaw
        self.timeout = timeout
        self.paths = paths
        self._paused = False

    def on_identify(self) -> WriterMetadata:
        files = [FileGroup(path.rpartition("/")[0] or "/", path.rpartition("/")[2], "files") for path in self.paths]
        component = Component("ShadowStore Command Hooks", self.hook, "filegroup", files)
        return WriterMetadata(
            self.name, self.writer_id, self.instance_id, USAGE_USER_DATA, SOURCE_OTHER, RESTORE_CUSTOM, [component]
        )

    def on_freeze(self) -> None:
        if self.pre_freeze_command:
            self._paused = True  # why before: a command that timed out may have paused it half way
            self._run("pre_freeze", self.pre_freeze_command)

    def on_thaw(self) -> None:
        self._resume()

    def on_abort(self) -> None:
        self._resume()

    def on_backup_shutdown(self) -> None:
        self._resume()

    def snapshot_files(self) -> list[str]:
        return list(self.paths)

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if self.post_thaw_command:
                self._run("post_thaw", self.post_thaw_command)

    def _run(self, which: str, command: str) -> None:
        try:
            done = subprocess.run(
                shlex.split(command), capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise WriterVeto(
                f"the {which} command of hook {self.hook!r} did not finish within {self.timeout:g} s: {command}",
                failure=WriterFailure.TIMEOUT,
                hint=f"see why it hangs, or raise the hook's timeout in {CONFIG_NAME}; then run the backup again",
            ) from None
        except OSError as exc:
            raise WriterVeto(
                f"the {which} command of hook {self.hook!r} could not run: {exc.strerror}: {command}",
                failure=WriterFailure.NON_RETRYABLE,
                hint=f"correct the hook's {which} in {CONFIG_NAME} ([[vss.hook]]); then run the backup again",
            ) from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise WriterVeto(
                f"the {which} command of hook {self.hook!r} exited {done.returncode} ({said[0]}): {command}",
                failure=WriterFailure.RETRYABLE,
                hint="the application behind the hook refused; once it can pause, run the backup again (no shadow "
                "copy was kept)"
                if which == "pre_freeze"
                else "the application behind the hook may still be paused: resume it by hand, and correct the hook",
            )


def hook_writers(settings: Mapping[str, Any]) -> list[CommandHookWriter]:
    """The hooks configured in ``[[vss.hook]]`` of a home's settings. Raises InvalidParameterError naming a
    malformed entry."""
    entries: Any = settings.get("vss", {}).get("hook", [])
    if not isinstance(entries, list):
        raise InvalidParameterError("vss.hook in shadowstore.toml must be a list of [[vss.hook]] tables")
    writers = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidParameterError(f"[[vss.hook]] number {index} in shadowstore.toml has no name")
        commands = {k: entry.get(k) for k in ("pre_freeze", "post_thaw")}
        if not any(commands.values()) or any(v is not None and not isinstance(v, str) for v in commands.values()):
            raise InvalidParameterError(f"hook {entry['name']!r} needs a pre_freeze or post_thaw command (text)")
        paths = entry.get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
            raise InvalidParameterError(f"hook {entry['name']!r}: paths must be a list of absolute paths")
        timeout = parse_seconds(entry.get("timeout", DEFAULT_HOOK_SECONDS), f"vss.hook {entry['name']} timeout")
        writers.append(CommandHookWriter(entry["name"], commands["pre_freeze"], commands["post_thaw"], timeout, paths))
    return writers
