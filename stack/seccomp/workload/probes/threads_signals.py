"""Probe: threads, a thread pool, timers, signals and clocks."""

import concurrent.futures
import json
import os
import signal
import threading
import time

out = {}
results = []
threads = [threading.Thread(target=lambda i=i: results.append(i)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    out["pool"] = sum(pool.map(lambda x: x * x, range(16)))
event = threading.Event()
out["event"] = event.wait(0.05)
lock = threading.Lock()
out["lock"] = lock.acquire(timeout=0.05)
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append("usr1"))
os.kill(os.getpid(), signal.SIGUSR1)
signal.signal(signal.SIGALRM, lambda *a: got.append("alrm"))
signal.setitimer(signal.ITIMER_REAL, 0.05)
time.sleep(0.2)
signal.alarm(0)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
os.kill(os.getpid(), signal.SIGUSR2)
out["sigwait"] = signal.sigtimedwait({signal.SIGUSR2}, 1).si_signo
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
os.kill(pid, signal.SIGTERM)
out["child"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
os.kill(1, 0)
out["threads"] = len(results)
out["signals"] = got
out["clock"] = [
    time.time() > 0,
    time.monotonic() > 0,
    time.process_time() >= 0,
    time.thread_time() >= 0,
    time.clock_getres(time.CLOCK_MONOTONIC),
]
out["random"] = len(os.urandom(16))
print(json.dumps(out))
assert out["threads"] == 8 and "usr1" in got and out["child"] == -signal.SIGTERM
