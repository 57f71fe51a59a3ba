"""The command allowlist: which argvs `command` job types may run.

JOBS_COMMAND_ALLOWLIST holds entries separated by commas. Each entry is the start
of an argv, split into words as a shell would (shlex: quote a word that holds a
space or a comma). A job type's argv must begin with the words of one entry,
exactly:

    /bin/echo                       /bin/echo, with any further arguments
    /usr/bin/rsync -a               /usr/bin/rsync -a, with any further arguments
    /bin/sh /opt/jobs/backup.sh     that argv and nothing more: /bin/sh is a launcher

A launcher (LAUNCHERS: a shell, an interpreter, or a program that runs the
program named in its arguments) would run any code whoever writes the argv
wants, given the right further arguments: an entry for one allows that argv
exactly, and an entry that is a launcher alone is refused at start-up. With
JOBS_COMMAND_ALLOW_LAUNCHERS on, launchers are entries like any other: Editors
can then run anything on the workers.

Imported by jobsite/settings.py, so it imports nothing of Django's. See
docs/security.md, "Command allowlist".
"""

import re
import shlex
from collections.abc import Sequence
from pathlib import PurePosixPath

Entry = tuple[str, ...]

# By the program's file name; a version after the name counts (python3.12, perl5.36).
SHELLS = ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "csh", "tcsh", "fish", "rbash", "yash", "busybox")
INTERPRETERS = (
    "python", "pypy", "perl", "ruby", "php", "lua", "luajit", "node", "nodejs", "deno", "bun", "tclsh", "wish",
    "expect", "Rscript", "R", "julia", "guile", "awk", "gawk", "mawk", "nawk", "pwsh", "osascript",
)  # fmt: skip
RUNNERS = (
    "env", "sudo", "doas", "su", "runuser", "setpriv", "setsid", "nohup", "nice", "ionice", "chrt", "taskset",
    "timeout", "stdbuf", "time", "chroot", "flock", "xargs", "parallel", "watch", "strace", "ltrace", "gdb",
    "valgrind", "nsenter", "unshare", "systemd-run", "script", "unbuffer", "firejail", "bwrap", "ssh", "find", "make",
)  # fmt: skip
_VERSIONED = re.compile(r"(?P<name>.+?)[0-9][0-9.]*")


def launcher_kind(program: str) -> str | None:
    """What kind of launcher `program` is ("a shell", "an interpreter", "a program
    that runs other programs"), or None when it is none of the known ones."""
    name = PurePosixPath(program).name
    versioned = _VERSIONED.fullmatch(name)
    for candidate in (name, versioned.group("name") if versioned else None):
        if candidate in SHELLS:
            return "a shell"
        if candidate in INTERPRETERS:
            return "an interpreter"
        if candidate in RUNNERS:
            return "a program that runs other programs"
    return None


def parse_allowlist(text: str, *, allow_launchers: bool) -> list[Entry]:
    """The entries of JOBS_COMMAND_ALLOWLIST's `text`. ValueError with one line
    saying what to fix: a quote left open, or a launcher alone."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=",")
    lexer.whitespace_split = True
    entries: list[Entry] = []
    words: list[str] = []
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise ValueError(f"{exc} in {text!r}: quote words as a shell would") from None
    for token in [*tokens, ","]:
        if token and set(token) == {","}:
            if words:
                entries.append(tuple(words))
            words = []
        else:
            words.append(token)
    for entry in entries:
        kind = launcher_kind(entry[0])
        if len(entry) == 1 and kind and not allow_launchers:
            raise ValueError(
                f"{entry[0]!r} is {kind}: alone, it would let Editors run any code on the workers. List the whole "
                f"command instead (e.g. '{entry[0]} /opt/jobs/backup.sh', which allows that argv only), "
                "or set JOBS_COMMAND_ALLOW_LAUNCHERS=1 to allow it with any arguments"
            )
    return entries


def join(words: Sequence[str]) -> str:
    """`words` as an entry of JOBS_COMMAND_ALLOWLIST, as parse_allowlist reads them back."""
    quoted = [shlex.quote(word) for word in words]
    # shlex.quote leaves a comma bare, but a bare comma ends an entry here.
    return " ".join(f"'{q}'" if q == word and "," in word else q for q, word in zip(quoted, words, strict=True))


def argv_problem(argv: Sequence[str], allowlist: Sequence[Entry], *, allow_launchers: bool) -> str | None:
    """Why JOBS_COMMAND_ALLOWLIST does not allow `argv`, or None when it does."""
    exact_only = None
    for entry in allowlist:
        if tuple(argv[: len(entry)]) != tuple(entry):
            continue
        if len(argv) == len(entry) or allow_launchers or not launcher_kind(entry[0]):
            return None
        exact_only = entry
    command = join(argv)
    if exact_only:
        return (
            f"'{command}' is not in JOBS_COMMAND_ALLOWLIST: it allows '{join(exact_only)}' with no further "
            f"arguments, since {exact_only[0]} is {launcher_kind(exact_only[0])}. "
            "An administrator must add the whole command."
        )
    listed = ", ".join(join(entry) for entry in allowlist) or "nothing: the command kind is off"
    return f"'{command}' is not in JOBS_COMMAND_ALLOWLIST (it allows {listed}); an administrator must add it."
