"""The Falco event of a scenario's attempt: the fields Falco's syscall source would fill in.

A scenario reports what it really did (stack/falco/scenarios.py, falco/scenarios/_prelude.py);
this turns each attempt into the exit event of its syscall as libsinsp renders it, so a rule's
condition can be evaluated on it (RuleSet.matches). What Falco leaves out, this leaves out. A
failed exec keeps the caller's proc.* fields (no new program started; the attempted path is in
evt.arg.filename). A failed open made no descriptor: libsinsp's fd filter check then takes
fd.name, fd.directory, fd.filename and fd.typechar from the open's own arguments
(sinsp_filter_check_fd::extract_from_null_fd) and has no fd.num or fd.type.
"""

from __future__ import annotations

import errno
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPENS = ("open", "openat", "openat2", "creat")
EXECS = ("execve", "execveat")
SOCKET_CALLS = ("connect", "listen", "bind", "accept", "accept4")
COMM_LENGTH = 15
"""The kernel keeps a process name (comm, Falco's proc.name) to 15 characters."""


@dataclass(frozen=True)
class ContainerIdentity:
    """What Falco's container plugin says of a container: its id, name and image."""

    id: str
    name: str
    image: str

    @classmethod
    def from_inspect(cls, attrs: Mapping[str, Any]) -> ContainerIdentity:
        """From `docker inspect` of the running container."""
        return cls(str(attrs["Id"]), str(attrs["Name"]).lstrip("/"), str(attrs["Config"]["Image"]))

    @property
    def repository(self) -> str:
        """The image without its tag or digest (container.image.repository)."""
        return image_repository(self.image)

    @property
    def tag(self) -> str:
        image = self.image.split("@", 1)[0]
        name, _, tag = image.rpartition(":")
        return tag if name and "/" not in tag else ""

    def fields(self) -> dict[str, object]:
        return {
            "container.id": self.id[:12],
            "container.name": self.name,
            "container.image": self.image,
            "container.image.repository": self.repository,
            "container.image.tag": self.tag,
        }


def image_repository(image: str) -> str:
    """`qcstack/qc-mcp:local` -> `qcstack/qc-mcp`; a registry's port is not a tag."""
    image = image.split("@", 1)[0]
    name, _, tag = image.rpartition(":")
    return name if name and "/" not in tag else image


def errno_number(name: str) -> int:
    number = getattr(errno, name, None)
    if not isinstance(number, int):
        raise ValueError(f"{name!r} is not an errno name (nor SUCCESS)")
    return number


def _process_fields(process: Mapping[str, Any]) -> dict[str, object]:
    argv = [str(a) for a in process.get("argv") or [process["exepath"]]]
    args = " ".join(argv[1:])
    name = str(process["name"])
    fields: dict[str, object] = {
        "proc.name": name,
        "proc.exepath": str(process["exepath"]),
        "proc.exe": argv[0],
        "proc.args": args,
        "proc.cmdline": f"{name} {args}".strip(),
        "user.uid": process["uid"],
    }
    if process.get("pname"):
        fields["proc.pname"] = str(process["pname"])
    return fields


def _open_fields(attempt: Mapping[str, Any], succeeded: bool) -> dict[str, object]:
    path, flags = str(attempt["path"]), str(attempt.get("flags", "O_RDONLY")).split("|")
    fields: dict[str, object] = {
        "evt.arg.name": path,
        "evt.arg.flags": "|".join(flags),
        "fs.path.name": path,
        "evt.is_open_write": bool({"O_WRONLY", "O_RDWR"} & set(flags)),
        "evt.is_open_read": bool({"O_RDONLY", "O_RDWR"} & set(flags)),
    }
    fields.update(
        {
            "fd.name": path,
            "fd.directory": posixpath.dirname(path),
            "fd.filename": posixpath.basename(path),
            "fd.typechar": "f",
        }
    )
    if succeeded:
        fields.update({"fd.num": 3, "fd.type": "file"})
    return fields


def _exec_fields(attempt: Mapping[str, Any], succeeded: bool) -> dict[str, object]:
    path = str(attempt["path"])
    fields: dict[str, object] = {"evt.arg.filename": path}
    if succeeded:
        caller = attempt["process"]
        fields.update(
            {
                "proc.name": posixpath.basename(path)[:COMM_LENGTH],
                "proc.exepath": str(attempt.get("exepath", path)),
                "proc.exe": path,
                "proc.pname": str(caller["name"]),
                "proc.is_exe_from_memfd": bool(attempt.get("memfd")),
            }
        )
    return fields


def _socket_fields(attempt: Mapping[str, Any], succeeded: bool) -> dict[str, object]:
    address, port = str(attempt["address"]), int(attempt["port"])
    ipv6 = ":" in address
    fields: dict[str, object] = {
        "fd.typechar": "6" if ipv6 else "4",
        "fd.type": "ipv6" if ipv6 else "ipv4",
        "fd.l4proto": str(attempt.get("protocol", "tcp")),
        "fd.num": 3,
        "fd.sip": address,
        "fd.sport": port,
    }
    if attempt["syscall"] == "connect":
        fields.update({"fd.rip": address, "fd.rport": port, "fd.connected": succeeded})
    else:
        fields.update({"fd.lip": address, "fd.lport": port})
    return fields


def falco_event(attempt: Mapping[str, Any], container: ContainerIdentity) -> dict[str, object]:
    """The exit event of one attempted syscall, as Falco's fields, in `container`."""
    syscall, result = str(attempt["syscall"]), str(attempt["result"])
    succeeded = result == "SUCCESS"
    event: dict[str, object] = {
        "evt.type": syscall,
        "evt.dir": "<",
        "evt.res": result,
        "evt.rawres": 0 if succeeded else -errno_number(result),
        "evt.failed": not succeeded,
        **_process_fields(attempt["process"]),
        **container.fields(),
    }
    if syscall in OPENS:
        event.update(_open_fields(attempt, succeeded))
    elif syscall in EXECS:
        event.update(_exec_fields(attempt, succeeded))
    elif syscall in SOCKET_CALLS:
        event.update(_socket_fields(attempt, succeeded))
    elif syscall == "memfd_create":
        event["evt.arg.name"] = str(attempt["path"])
    return event
