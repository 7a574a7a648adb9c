"""RUN controls: qc-mcp's container runtime hardening, each tried from inside the container."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path

import pytest

from infra_tests.conftest import Container, StackContainers
from infra_tests.dockerhost import DockerHost
from infra_tests.services import SIDE_SERVICES, Expected
from stack.egress import HEALTHCHECK_COMMAND
from stack.settings import Settings

MiB = 1024 * 1024
TMPFS_OPTIONS = {"rw", "noexec", "nosuid", "nodev", "size=16m", "mode=1777"}

# x86_64 syscall numbers with arguments that succeed, or fail with something other than EPERM,
# when seccomp does not stop them; so an EPERM here is seccomp's answer wherever possible.
DENIED_SYSCALLS = {
    "ptrace": (101, 0, 0, 0, 0),
    "process_vm_readv": (310, 1, 0, 0, 0, 0, 0),
    "process_vm_writev": (311, 1, 0, 0, 0, 0, 0),
    "personality": (135, 0xFFFFFFFF),
    "unshare": (272, 0x10000000),
    "setns": (308, -1, 0),
    "mount": (165, 0, 0, 0, 0, 0),
    "umount2": (166, 0, 0),
    "pivot_root": (155, 0, 0),
    "fsopen": (430, 0, 0),
    "fsconfig": (431, -1, 0, 0, 0, 0),
    "fsmount": (432, -1, 0, 0),
    "fspick": (433, -1, 0, 0),
    "move_mount": (429, -1, 0, -1, 0, 0),
    "open_tree": (428, -1, 0, 0),
    "mount_setattr": (442, -1, 0, 0, 0, 0),
    "keyctl": (250, 0, -3, 0),
    "add_key": (248, 0, 0, 0, 0, 0),
    "request_key": (249, 0, 0, 0, 0),
    "bpf": (321, 0, 0, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0),
    "userfaultfd": (323, 0),
    "io_uring_setup": (425, 1, 0),
    "io_uring_enter": (426, -1, 0, 0, 0, 0, 0),
    "io_uring_register": (427, -1, 0, 0, 0),
    "kexec_load": (246, 0, 0, 0, 0),
    "kexec_file_load": (320, -1, -1, 0, 0, 0),
    "init_module": (175, 0, 0, 0),
    "finit_module": (313, -1, 0, 0),
    "delete_module": (176, 0, 0),
}
DENIED_SOCKET_FAMILIES = {
    "AF_NETLINK": 16,
    "AF_PACKET": 17,
    "AF_ALG": 38,
    "AF_VSOCK": 40,
    "AF_KEY": 15,
}
CLONE_NEW_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWCGROUP": 0x02000000,
}


# RUN-01 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-01", "config")
def test_root_filesystem_is_configured_read_only(qc_mcp: Container) -> None:
    assert qc_mcp.host_config["ReadonlyRootfs"] is True


@pytest.mark.control("RUN-01", "behaviour")
@pytest.mark.parametrize(
    "directory",
    [
        "/",
        "/app",
        "/app/src",
        "/etc",
        "/usr/bin",
        "/usr/lib/python3.11",
        "/usr/local/lib/python3.11/dist-packages",
        "/run",
    ],
)
def test_intruder_cannot_write_outside_the_tmpfs(
    docker: DockerHost, qc_mcp: Container, directory: str
) -> None:
    attack = 'with open(os.path.join(sys.argv[1], "qcstack-probe"), "w") as f: f.write("x")'
    assert docker.attempt(qc_mcp.id, attack, directory) == errno.EROFS


@pytest.mark.control("RUN-01", "behaviour")
def test_intruder_cannot_replace_the_server_code(docker: DockerHost, qc_mcp: Container) -> None:
    attack = 'os.rename("/app/launch.py", "/app/launch.bak")'
    assert docker.attempt(qc_mcp.id, attack) == errno.EROFS


# RUN-02 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-02", "config")
def test_tmpfs_is_noexec_nosuid_nodev_and_size_capped(qc_mcp: Container) -> None:
    tmpfs = qc_mcp.host_config["Tmpfs"]
    assert list(tmpfs) == ["/tmp"]
    assert set(tmpfs["/tmp"].split(",")) == TMPFS_OPTIONS
    assert qc_mcp.host_config["IpcMode"] == "none", "Docker's writable /dev/shm is mounted"


@pytest.mark.control("RUN-02", "behaviour")
def test_intruder_cannot_drop_files_in_shared_memory(docker: DockerHost, qc_mcp: Container) -> None:
    attack = 'with open("/dev/shm/dropped", "w") as f: f.write("x")'
    assert docker.attempt(qc_mcp.id, attack) == errno.ENOENT


@pytest.mark.control("RUN-02", "behaviour")
def test_dropped_binary_cannot_be_executed(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import shutil
        dropped = os.path.join(sys.argv[1], "dropped")
        shutil.copyfile("/usr/bin/python3", dropped)
        os.chmod(dropped, 0o755)
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(dropped, [dropped, "-c", "pass"])
            except OSError as error:
                os._exit(100 + error.errno)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.unlink(dropped)
        report(executed=status == 0, error=status - 100 if status >= 100 else None)
    """,
        "/tmp",
    )
    assert result.data == {"executed": False, "error": errno.EACCES}


@pytest.mark.control("RUN-02", "behaviour")
def test_dropped_code_cannot_be_mapped_executable(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import mmap
        with open("/tmp/payload", "wb") as handle:
            handle.write(b"\\xc3" * 4096)
        fd = os.open("/tmp/payload", os.O_RDONLY)
        try:
            mmap.mmap(fd, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC)
            report(error=None)
        except OSError as error:
            report(error=error.errno)
        finally:
            os.close(fd)
            os.unlink("/tmp/payload")
    """,
    )
    assert result.data == {"error": errno.EPERM}


@pytest.mark.control("RUN-02", "behaviour")
def test_intruder_cannot_fill_memory_through_the_tmpfs(
    docker: DockerHost, qc_mcp: Container
) -> None:
    result = docker.probe(
        qc_mcp.id,
        f"""
        written = 0
        try:
            with open("/tmp/filler", "wb") as handle:
                chunk = b"x" * {MiB}
                for _ in range(64):
                    handle.write(chunk)
                    handle.flush()
                    written += 1
            report(error=None, mib=written)
        except OSError as error:
            report(error=error.errno, mib=written)
        finally:
            os.unlink("/tmp/filler")
    """,
    )
    assert result.data["error"] == errno.ENOSPC
    assert result.data["mib"] <= 16


# RUN-03 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-03", "config")
def test_all_capabilities_are_dropped(qc_mcp: Container) -> None:
    assert qc_mcp.host_config["CapDrop"] == ["ALL"]
    assert not qc_mcp.host_config["CapAdd"]
    assert qc_mcp.host_config["Privileged"] is False


@pytest.mark.control("RUN-03", "behaviour")
@pytest.mark.parametrize("process", ["probe", "server"])
def test_processes_hold_no_capability_in_any_set(
    docker: DockerHost, qc_mcp: Container, process: str
) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        pid = os.getpid() if sys.argv[1] == "probe" else server_pid()
        caps = {}
        for line in open(f"/proc/{pid}/status"):
            key, _, value = line.partition(":")
            if key.startswith("Cap"):
                caps[key] = int(value, 16)
        report(**caps)
    """,
        process,
    )
    assert result.data == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}


@pytest.mark.control("RUN-03", "behaviour")
@pytest.mark.parametrize(
    "attack",
    [
        "os.chown('/tmp/owned', 0, 0)",
        "socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)",
        "os.mknod('/tmp/device', 0o600 | stat.S_IFCHR, os.makedev(1, 3))",
    ],
)
def test_privileged_kernel_operations_are_refused(
    docker: DockerHost, qc_mcp: Container, attack: str
) -> None:
    setup = 'import socket, stat\nopen("/tmp/owned", "w").close()'
    assert docker.attempt(qc_mcp.id, attack, setup=setup) == errno.EPERM


# RUN-04 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-04", "config")
def test_no_new_privileges_is_set(qc_mcp: Container) -> None:
    assert "no-new-privileges:true" in qc_mcp.host_config["SecurityOpt"]


@pytest.mark.control("RUN-04", "behaviour")
@pytest.mark.parametrize("process", ["probe", "server"])
def test_exec_cannot_grant_new_privileges(
    docker: DockerHost, qc_mcp: Container, process: str
) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import subprocess
        def flag(pid):
            status = open(f"/proc/{pid}/status").read()
            return int(status.split("NoNewPrivs:")[1].split()[0])
        pid = os.getpid() if sys.argv[1] == "probe" else server_pid()
        # A freshly exec'd program keeps the flag: exec cannot hand it privileges.
        execd = subprocess.run(
            [sys.executable, "-c", "print(open('/proc/self/status').read())"],
            capture_output=True, text=True,
        ).stdout
        report(process=flag(pid), execd=int(execd.split("NoNewPrivs:")[1].split()[0]))
    """,
        process,
    )
    assert result.data == {"process": 1, "execd": 1}


# RUN-05 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-05", "config")
def test_seccomp_profile_is_the_recorded_allow_list(qc_mcp: Container, settings: Settings) -> None:
    options = [o for o in qc_mcp.host_config["SecurityOpt"] if o.startswith("seccomp=")]
    assert len(options) == 1, qc_mcp.host_config["SecurityOpt"]
    applied = json.loads(options[0].removeprefix("seccomp="))
    expected = json.loads(Path(settings.repo_root / "seccomp" / "qc-mcp.json").read_text())
    assert applied == expected
    assert applied["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.control("RUN-05", "behaviour")
@pytest.mark.parametrize("name", sorted(DENIED_SYSCALLS))
def test_denied_syscall_is_refused(docker: DockerHost, qc_mcp: Container, name: str) -> None:
    nr, *args = DENIED_SYSCALLS[name]
    result = docker.probe(
        qc_mcp.id,
        f"""
        ret, err = syscall({nr}, *{args!r})
        if ret == 0 and {nr} == 101:
            os._exit(0)  # unconfined ptrace(TRACEME) succeeded: say nothing more
        report(ret=ret, errno=err)
    """,
    )
    assert result.data == {"ret": -1, "errno": errno.EPERM}, f"{name} was not refused"


@pytest.mark.control("RUN-05", "behaviour")
def test_clone3_answers_enosys_so_libc_falls_back(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(qc_mcp.id, "ret, err = syscall(435, 0, 0); report(ret=ret, errno=err)")
    assert result.data == {"ret": -1, "errno": errno.ENOSYS}


@pytest.mark.control("RUN-05", "behaviour")
@pytest.mark.parametrize("flag", sorted(CLONE_NEW_FLAGS))
def test_clone_into_a_new_namespace_is_refused(
    docker: DockerHost, qc_mcp: Container, flag: str
) -> None:
    SIGCHLD = 17
    result = docker.probe(
        qc_mcp.id,
        f"""
        ret, err = syscall(56, {CLONE_NEW_FLAGS[flag] | SIGCHLD}, 0, 0, 0, 0)
        if ret == 0:
            os._exit(0)
        if ret > 0:
            os.waitpid(ret, 0)
        report(ret=min(ret, 1), errno=err if ret < 0 else 0)
    """,
    )
    assert result.data == {"ret": -1, "errno": errno.EPERM}


@pytest.mark.control("RUN-05", "behaviour")
@pytest.mark.parametrize("family", sorted(DENIED_SOCKET_FAMILIES))
def test_socket_of_other_family_is_refused(
    docker: DockerHost, qc_mcp: Container, family: str
) -> None:
    result = docker.probe(
        qc_mcp.id,
        f"""
        fd, err = syscall(41, {DENIED_SOCKET_FAMILIES[family]}, 3, 0)
        if fd >= 0:
            os.close(fd)
        report(ok=fd >= 0, errno=err if fd < 0 else 0)
    """,
    )
    assert result.data == {"ok": False, "errno": errno.EPERM}


@pytest.mark.control("RUN-05", "behaviour")
def test_allow_list_keeps_threads_forks_and_inet_sockets_working(
    docker: DockerHost, qc_mcp: Container
) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import socket, threading
        box = []
        thread = threading.Thread(target=box.append, args=("thread",))
        thread.start(); thread.join()
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        forked = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
        families = []
        for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            with socket.socket(family, socket.SOCK_STREAM):
                families.append(int(family))
        report(thread=box == ["thread"], fork=forked, families=families)
    """,
    )
    assert result.data == {"thread": True, "fork": True, "families": [1, 2, 10]}


# RUN-06 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-06", "config")
def test_memory_is_limited_without_extra_swap(qc_mcp: Container) -> None:
    assert qc_mcp.host_config["Memory"] == 512 * MiB
    assert qc_mcp.host_config["MemorySwap"] == 512 * MiB


@pytest.mark.control("RUN-06", "behaviour")
def test_memory_hog_is_killed_at_the_limit(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        f"""
        hog = b"x" * ({640 * MiB})
        report(allocated=len(hog))
    """,
    )
    assert result.rc == 137, f"a 640 MiB allocation was not stopped (rc={result.rc})"
    assert docker.inspect("container", qc_mcp.id)["State"]["Running"] is True


# RUN-07 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-07", "config")
def test_cpu_is_limited(qc_mcp: Container) -> None:
    assert qc_mcp.host_config["NanoCpus"] == 1_000_000_000


@pytest.mark.control("RUN-07", "behaviour")
def test_busy_loops_cannot_take_more_than_one_cpu(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import resource, time
        started = time.monotonic()
        pids = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    pass
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        wall = time.monotonic() - started
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        report(cpus=(used.ru_utime + used.ru_stime) / wall)
    """,
    )
    assert result.data["cpus"] <= 1.2, f"two busy loops used {result.data['cpus']:.2f} CPUs"


# RUN-08 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-08", "config")
def test_process_count_is_limited(qc_mcp: Container) -> None:
    assert qc_mcp.host_config["PidsLimit"] == 128


@pytest.mark.control("RUN-08", "behaviour")
def test_fork_bomb_stops_at_the_pids_limit(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import signal, time
        children, error = [], None
        for _ in range(400):
            try:
                pid = os.fork()
            except OSError as exc:
                error = exc.errno
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for pid in children:
            os.waitpid(pid, 0)
        report(forked=len(children), error=error)
    """,
    )
    assert result.data["error"] == errno.EAGAIN
    assert result.data["forked"] < 128


# RUN-09 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-09", "config")
def test_open_files_are_limited(qc_mcp: Container) -> None:
    assert qc_mcp.host_config["Ulimits"] == [{"Name": "nofile", "Hard": 1024, "Soft": 1024}]


@pytest.mark.control("RUN-09", "behaviour")
def test_descriptor_flood_stops_at_the_limit(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import resource
        fds, error = [], None
        for _ in range(8192):
            try:
                fds.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                error = exc.errno
                break
        for fd in fds:
            os.close(fd)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
            raised = True
        except (ValueError, OSError):
            raised = False
        report(opened=len(fds), error=error, raised=raised)
    """,
    )
    assert result.data["error"] == errno.EMFILE
    assert result.data["opened"] < 1024
    assert result.data["raised"] is False


# RUN-10 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-10", "config")
def test_init_runs_as_pid_1(docker: DockerHost, qc_mcp: Container) -> None:
    assert qc_mcp.host_config["Init"] is True
    result = docker.probe(
        qc_mcp.id,
        """
        report(argv0=open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode())
    """,
    )
    assert result.data["argv0"].endswith("docker-init")


@pytest.mark.control("RUN-10", "behaviour")
def test_orphaned_processes_do_not_linger_as_zombies(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        import time
        middle = os.fork()
        if middle == 0:
            if os.fork() == 0:
                time.sleep(0.3)
                os._exit(0)
            os._exit(0)
        os.waitpid(middle, 0)
        time.sleep(1.5)
        zombies = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[0] == "Z":
                    zombies.append(int(entry))
        report(zombies=zombies)
    """,
    )
    assert result.data == {"zombies": []}


# RUN-11 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-11", "config")
def test_health_check_makes_a_real_request_and_passes(
    docker: DockerHost, qc_mcp: Container
) -> None:
    check = qc_mcp.attrs["Config"]["Healthcheck"]
    assert check["Test"][0] == "CMD"
    assert "request(" in " ".join(check["Test"])
    assert docker.inspect("container", qc_mcp.id)["State"]["Health"]["Status"] == "healthy"


@pytest.mark.control("RUN-11", "behaviour")
def test_frozen_server_fails_its_health_check(docker: DockerHost, qc_mcp: Container) -> None:
    check = qc_mcp.attrs["Config"].get("Healthcheck") or {}
    assert check.get("Test", ["NONE"])[0] == "CMD", "no health check is configured"
    signal_server = "import signal; os.kill(server_pid(), getattr(signal, sys.argv[1]))"
    docker.probe(qc_mcp.id, signal_server, "SIGSTOP")
    try:
        frozen = docker.run(
            "docker exec %s" + " %s" * (len(check["Test"]) - 1), qc_mcp.id, *check["Test"][1:]
        )
    finally:
        docker.probe(qc_mcp.id, signal_server, "SIGCONT")
    assert frozen.rc != 0


# RUN-12 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-12", "config")
def test_container_logs_are_size_limited(qc_mcp: Container) -> None:
    log = qc_mcp.host_config["LogConfig"]
    assert log == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "3"}}


@pytest.mark.control("RUN-12", "behaviour")
def test_log_flood_cannot_fill_the_disk(docker: DockerHost, qc_mcp: Container) -> None:
    docker.probe(
        qc_mcp.id,
        f"""
        line = b"qcstack log flood " + b"x" * 1000 + b"\\n"
        with open(f"/proc/{{server_pid()}}/fd/1", "wb") as out:
            for _ in range({6 * MiB} // len(line)):
                out.write(line)
        report(done=True)
    """,
    )
    kept = int(docker.check(f"docker logs {qc_mcp.id} 2>&1 | wc -c"))
    assert kept <= 4 * MiB, f"docker kept {kept} bytes of a 6 MiB flood"


# RUN-13 ---------------------------------------------------------------------------------------


@pytest.mark.control("RUN-13", "config")
def test_only_read_only_secret_files_are_mounted(qc_mcp: Container) -> None:
    mounts = {m["Destination"] for m in qc_mcp.attrs["Mounts"]}
    credentials = {"/run/secrets/qc_user_id", "/run/secrets/qc_api_token"}
    # Test stacks add the test CA that signed the API double's certificate (compose/test.yaml).
    assert credentials <= mounts <= credentials | {"/run/secrets/qc_test_ca"}
    assert all(m["Type"] == "bind" and m["RW"] is False for m in qc_mcp.attrs["Mounts"])


@pytest.mark.control("RUN-13", "behaviour")
@pytest.mark.parametrize(
    "socket_path", ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"]
)
def test_intruder_cannot_reach_the_docker_api(
    docker: DockerHost, qc_mcp: Container, socket_path: str
) -> None:
    attack = "with socket.socket(socket.AF_UNIX) as client: client.connect(sys.argv[1])"
    error = docker.attempt(qc_mcp.id, attack, socket_path, setup="import socket")
    assert error == errno.ENOENT


@pytest.mark.control("RUN-13", "behaviour")
def test_no_host_path_is_mounted_writable(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        writable = []
        for line in open("/proc/self/mountinfo"):
            fields = line.split()
            point, options = fields[4], fields[5].split(",")
            fstype = fields[fields.index("-") + 1]
            if "rw" in options and fstype not in ("tmpfs", "proc", "sysfs", "devpts", "mqueue",
                                                  "cgroup", "cgroup2", "overlay"):
                writable.append(point)
        report(writable=writable)
    """,
    )
    # Docker itself bind-mounts these three from its own state directory for name resolution.
    assert set(result.data["writable"]) <= {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}


# The other services ---------------------------------------------------------------------------
# The same controls as qc-mcp, sized for each (infra_tests/services.py). The proxy and the relay
# have no interpreter to probe from, so these tests act from the Docker host on the running
# process: through the container's own mounts (/proc/<pid>/root) and the kernel's record of its
# process (/proc/<pid>/status).

SIDE_LOGS = {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "3"}}


def same_for_all(value: object) -> Callable[[Expected], object]:
    return lambda expected: value


@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
@pytest.mark.parametrize(
    ("field", "expected_value"),
    [
        pytest.param(
            "ReadonlyRootfs", same_for_all(True), marks=pytest.mark.control("RUN-01", "config")
        ),
        pytest.param("Tmpfs", attrgetter("tmpfs"), marks=pytest.mark.control("RUN-02", "config")),
        pytest.param(
            "IpcMode", same_for_all("none"), marks=pytest.mark.control("RUN-02", "config")
        ),
        pytest.param(
            "CapDrop", same_for_all(["ALL"]), marks=pytest.mark.control("RUN-03", "config")
        ),
        pytest.param("CapAdd", same_for_all(None), marks=pytest.mark.control("RUN-03", "config")),
        pytest.param(
            "Privileged", same_for_all(False), marks=pytest.mark.control("RUN-03", "config")
        ),
        pytest.param("Memory", attrgetter("memory"), marks=pytest.mark.control("RUN-06", "config")),
        pytest.param(
            "MemorySwap", attrgetter("memory"), marks=pytest.mark.control("RUN-06", "config")
        ),
        pytest.param(
            "NanoCpus", attrgetter("nano_cpus"), marks=pytest.mark.control("RUN-07", "config")
        ),
        pytest.param(
            "PidsLimit", attrgetter("pids"), marks=pytest.mark.control("RUN-08", "config")
        ),
        pytest.param(
            "Ulimits",
            same_for_all([{"Name": "nofile", "Hard": 1024, "Soft": 1024}]),
            marks=pytest.mark.control("RUN-09", "config"),
        ),
        pytest.param("Init", same_for_all(True), marks=pytest.mark.control("RUN-10", "config")),
        pytest.param(
            "LogConfig", same_for_all(SIDE_LOGS), marks=pytest.mark.control("RUN-12", "config")
        ),
    ],
)
def test_service_container_is_hardened_like_the_server(
    stack_containers: StackContainers,
    service: str,
    field: str,
    expected_value: Callable[[Expected], object],
) -> None:
    expected = expected_value(SIDE_SERVICES[service])
    assert stack_containers[service].host_config.get(field) == expected


@pytest.mark.control("RUN-04", "config")
@pytest.mark.control("RUN-05", "config")
@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
def test_service_runs_without_new_privileges_under_its_recorded_profile(
    stack_containers: StackContainers, settings: Settings, service: str
) -> None:
    options = stack_containers[service].host_config["SecurityOpt"]
    assert "no-new-privileges:true" in options
    applied = [json.loads(o.removeprefix("seccomp=")) for o in options if o.startswith("seccomp=")]
    expected = json.loads((settings.seccomp_dir / f"{service}.json").read_text())
    assert applied == [expected]
    assert expected["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.control("RUN-13", "config")
@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
def test_service_mounts_only_what_it_needs(stack_containers: StackContainers, service: str) -> None:
    mounts = stack_containers[service].attrs["Mounts"]
    found = sorted((m["Destination"], m["Type"], m["RW"]) for m in mounts)
    assert found == sorted(SIDE_SERVICES[service].mounts)
    assert not any(m["Type"] == "bind" and m["RW"] for m in mounts)


PROCESS_STATUS = """
    fields = {}
    for line in open(f"/proc/{sys.argv[1]}/status"):
        key, _, value = line.partition(":")
        fields[key] = value.split()
    report(**fields)
"""


def own_ids(expected: Expected) -> list[str]:
    return [str(expected.uid)] * 4


NO_CAPABILITIES = same_for_all(["0000000000000000"])


@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
@pytest.mark.parametrize(
    ("field", "expected_value"),
    [
        pytest.param("Uid", own_ids, marks=pytest.mark.control("IMG-03", "behaviour")),
        pytest.param("Gid", own_ids, marks=pytest.mark.control("IMG-03", "behaviour")),
        pytest.param("CapInh", NO_CAPABILITIES, marks=pytest.mark.control("RUN-03", "behaviour")),
        pytest.param("CapPrm", NO_CAPABILITIES, marks=pytest.mark.control("RUN-03", "behaviour")),
        pytest.param("CapEff", NO_CAPABILITIES, marks=pytest.mark.control("RUN-03", "behaviour")),
        pytest.param("CapBnd", NO_CAPABILITIES, marks=pytest.mark.control("RUN-03", "behaviour")),
        pytest.param("CapAmb", NO_CAPABILITIES, marks=pytest.mark.control("RUN-03", "behaviour")),
        pytest.param(
            "NoNewPrivs", same_for_all(["1"]), marks=pytest.mark.control("RUN-04", "behaviour")
        ),
        pytest.param(
            "Seccomp", same_for_all(["2"]), marks=pytest.mark.control("RUN-05", "behaviour")
        ),
    ],
)
def test_service_process_runs_confined(
    docker: DockerHost,
    stack_containers: StackContainers,
    service: str,
    field: str,
    expected_value: Callable[[Expected], object],
) -> None:
    pid = docker.main_pid(stack_containers[service].id)
    status = docker.host_probe(PROCESS_STATUS, str(pid))
    assert status.data["Name"] == [SIDE_SERVICES[service].comm], status.data.get("Name")
    assert status.data[field] == expected_value(SIDE_SERVICES[service])


@pytest.mark.control("RUN-01", "behaviour")
@pytest.mark.parametrize(
    ("service", "directory"),
    [(service, d) for service, expected in SIDE_SERVICES.items() for d in expected.read_only_dirs],
)
def test_nothing_can_write_into_the_services_root_filesystem(
    docker: DockerHost, stack_containers: StackContainers, service: str, directory: str
) -> None:
    # Even root on the host, reaching in through the container's own root: the mount is read-only.
    root = f"/proc/{docker.main_pid(stack_containers[service].id)}/root"
    attack = 'open(os.path.join(sys.argv[1] + sys.argv[2], "qcstack-probe"), "w").close()'
    assert docker.host_attempt(attack, root, directory) == errno.EROFS


@pytest.mark.control("RUN-02", "behaviour")
@pytest.mark.parametrize(
    ("service", "directory"),
    [(service, d) for service, expected in SIDE_SERVICES.items() for d in expected.tmpfs or {}],
)
def test_binary_dropped_in_a_services_tmpfs_cannot_be_executed(
    docker: DockerHost, stack_containers: StackContainers, service: str, directory: str
) -> None:
    setup = """
        import shutil, subprocess
        dropped = f"/proc/{sys.argv[1]}/root{sys.argv[2]}/dropped"
        shutil.copyfile("/bin/true", dropped)
        os.chmod(dropped, 0o755)
    """
    attack = "try:\n    subprocess.run([dropped], check=False)\nfinally:\n    os.unlink(dropped)"
    pid = str(docker.main_pid(stack_containers[service].id))
    assert docker.host_attempt(attack, pid, directory, setup=setup) == errno.EACCES


@pytest.mark.control("RUN-11", "config")
def test_proxy_health_check_proves_the_policy_is_loaded(
    docker: DockerHost, egress_proxy: Container
) -> None:
    check = egress_proxy.attrs["Config"]["Healthcheck"]["Test"]
    assert check == ["CMD", *HEALTHCHECK_COMMAND]
    assert docker.inspect("container", egress_proxy.id)["State"]["Health"]["Status"] == "healthy"


@pytest.mark.control("RUN-11", "config")
@pytest.mark.parametrize("service", ["gateway", "gateway-relay"])
def test_gateway_health_check_asks_the_gateway_itself(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    # Through the relay the same request proves the whole path to the gateway.
    container = stack_containers[service]
    check = container.attrs["Config"]["Healthcheck"]["Test"]
    assert check == ["CMD", "/usr/local/bin/healthcheck", "http://127.0.0.1:8080/healthz", "200"]
    assert docker.inspect("container", container.id)["State"]["Health"]["Status"] == "healthy"


@pytest.mark.control("RUN-11", "behaviour")
@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
def test_frozen_service_fails_its_health_check(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    container = stack_containers[service]
    check = container.attrs["Config"]["Healthcheck"]["Test"]
    pid = str(docker.main_pid(container.id))
    docker.check("kill -STOP %s", pid)
    try:
        frozen = docker.run(
            "timeout 10 docker exec %s" + " %s" * (len(check) - 1), container.id, *check[1:]
        )
    finally:
        docker.check("kill -CONT %s", pid)
    assert frozen.rc != 0
