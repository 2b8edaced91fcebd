"""``make demo``: the main job of ShadowStore on a built-in default, step by step, as the shell commands a
person would type.

A server home is made and the Information Store service started on it; mail arrives; an administrator deletes
old log files by hand (the step that wedged every later backup of the original system) and the full backup
through the service still succeeds; more mail, an incremental backup, the list of sets; the latest backup is
restored into the Recovery Storage Group and every mailbox is checked byte for byte against what the live
store held; the Mailbox Store is dismounted and its header shows Clean Shutdown; the service stops.

Each command runs as its own process, as typed: the CLI finds the service through the home's socket.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from shadowstore.service.client import ServiceClient, socket_of

MARKER = ".shadowstore-demo"
SG = "First Storage Group"
RSG = "Recovery Storage Group"
_ARCHIVED_LOG = re.compile(r"E00[0-9A-F]{5}\.log")
START_SECONDS = 60.0


class Demo:
    def __init__(self, home: str, mailboxes: int, messages: int) -> None:
        self.home = home
        self.exports = f"{home}-mail"
        self.mailboxes = mailboxes
        self.messages = messages
        self.service: subprocess.Popen[str] | None = None
        self._echo: threading.Thread | None = None

    # --- what the person sees ----------------------------------------------------------------------------

    @staticmethod
    def say(text: str) -> None:
        print(f"\n# {text}", flush=True)

    def run(self, *args: str) -> None:
        """``shadowstore --home HOME ARGS`` as a new process; raises SystemExit with its code if it fails."""
        shown = ["shadowstore", *args]
        print(f"\n$ {shlex.join(shown)}", flush=True)
        done = subprocess.run(_command("--home", self.home, *args), check=False)
        if done.returncode != 0:
            raise SystemExit(done.returncode)

    # --- the service -----------------------------------------------------------------------------------------

    def start_service(self) -> None:
        print("\n$ shadowstore serve &", flush=True)
        self.service = subprocess.Popen(
            _command("--home", self.home, "serve"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._echo = threading.Thread(target=self._echo_service, daemon=True)
        self._echo.start()
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise SystemExit(f"the service exited with code {self.service.returncode}")
            path = socket_of(self.home)
            if path is not None and _answers(path):
                return
            time.sleep(0.05)
        raise SystemExit("the service did not answer within a minute")

    def _echo_service(self) -> None:
        """The service's output, each warning event once: deleting logs by hand raises one per file."""
        assert self.service is not None and self.service.stdout is not None
        shown: set[str] = set()
        for line in self.service.stdout:
            event = re.match(r"event \S+ (\d+): ", line)
            if event is not None:
                if event.group(1) in shown:
                    continue
                shown.add(event.group(1))
                line = f"{line.rstrip()}  (its repeats: shadowstore events --id {event.group(1)})"
            print(f"[service] {line.rstrip()}", flush=True)

    def stop_service(self) -> None:
        if self.service is None or self.service.poll() is not None:
            return
        print(f"\n$ kill -TERM {self.service.pid}    # the service's pid: systemctl stop does the same", flush=True)
        self.service.send_signal(signal.SIGTERM)
        self.service.wait(timeout=300)
        if self._echo is not None:
            self._echo.join(timeout=5)

    # --- the job -------------------------------------------------------------------------------------------

    def main_job(self) -> None:
        names = [f"user{i:02d}" for i in range(1, self.mailboxes + 1)]
        self.say("A new server home: 'First Storage Group' with its Mailbox Store and Public Folder Store.")
        self.run("init", "--log-file-size", "256K")
        Path(self.home, MARKER).touch()
        self.say("The Information Store service owns the home and mounts its stores; every command below talks to it.")
        self.start_service()
        self.say(f"Mail arrives: {self.mailboxes} mailboxes, {self.messages} messages each (text, HTML, attachments).")
        self.run(
            "mail", "generate", "--mailboxes", str(self.mailboxes), "--messages", str(self.messages), "--seed", "1"
        )
        self.run("status")
        self.say("An administrator deletes old log files by hand to free space ...")
        self.delete_old_logs(os.path.join(self.home, SG))
        self.say("... and the full backup still succeeds: it names the missing generations and truncates the rest.")
        self.run("backup", "run", "--sg", SG, "--kind", "full")
        self.say("More mail, then an incremental backup (the logs since the full).")
        more = str(max(1, self.messages // 3))
        self.run("mail", "generate", "--mailboxes", str(self.mailboxes), "--messages", more, "--seed", "2")
        self.run("backup", "run", "--sg", SG, "--kind", "incremental")
        self.run("backup", "list")
        self.say("What each mailbox holds now, exported from the live store to compare with the restore.")
        print(f"\n$ mkdir {shlex.quote(self.exports)}", flush=True)
        Path(self.exports).mkdir(parents=True)
        for name in names:
            self.run("mail", "export", "--mailbox", name, "--format", "maildir", os.path.join(self.exports, name))
        self.say("The latest backup restored into the Recovery Storage Group, beside the live stores ...")
        self.run("restore", "run", "--into-recovery-group")
        self.say("... holds every message, byte for byte.")
        for name in names:
            self.run("mail", "check", "--sg", RSG, "--mailbox", name, os.path.join(self.exports, name))
        self.say("Dismount the Mailbox Store: its header says Clean Shutdown, needing no logs.")
        self.run("dismount", f"{SG}/Mailbox Store")
        self.run("eseutil", "/mh", os.path.join(self.home, SG, "priv1.edb"))
        self.say("Stop the service: every storage group is dismounted, every store in Clean Shutdown.")
        self.stop_service()
        self.run("status")

    @staticmethod
    def delete_old_logs(folder: str) -> None:
        """What the administrator did: remove archived log files, all but the oldest (E00.log stays)."""
        logs = sorted(path for path in Path(folder).iterdir() if _ARCHIVED_LOG.fullmatch(path.name))[1:]
        names = [path.name for path in logs]
        shown = names if len(names) <= 4 else [*names[:2], "...", names[-1]]
        print(f"\n$ rm {' '.join(shown)}    # {len(names)} files, in {folder}", flush=True)
        for path in logs:
            path.unlink()


def _command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()", *args]


def _answers(socket: str) -> bool:
    with ServiceClient(socket=socket) as client:
        try:
            client.get("/v1/health")
        except Exception:  # why broad: any failure means "not yet"; the loop above bounds the wait
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", default=os.path.abspath("demo-home"))
    parser.add_argument("--mailboxes", type=int, default=5)
    parser.add_argument("--messages", type=int, default=60, help="messages per mailbox before the full backup")
    args = parser.parse_args(argv)
    home = os.path.abspath(args.home)
    if Path(home).exists():
        if not Path(home, MARKER).exists():
            print(f"{home} exists and was not made by the demo; pass another --home", file=sys.stderr)
            return 3
        shutil.rmtree(home)
        shutil.rmtree(f"{home}-mail", ignore_errors=True)
    elif Path(f"{home}-mail").exists():
        # why refuse: with its home gone, nothing shows the folder is an earlier demo's exports, not the user's
        print(
            f"{home}-mail exists (the mail an earlier demo exported, if its home {home} was removed by hand); "
            "remove it, or pass another --home",
            file=sys.stderr,
        )
        return 3
    demo = Demo(home, args.mailboxes, args.messages)
    try:
        demo.main_job()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
        if not isinstance(exc.code, int):
            print(f"demo: {exc.code}", file=sys.stderr)
        return code
    finally:
        demo.stop_service()
    print("\nDone: the service took mail, full and incremental backups, and restored every message intact.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
