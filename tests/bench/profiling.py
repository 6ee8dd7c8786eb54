"""``--profile DIR``: sample each service with py-spy during a scenario's measured
window, and summarise where each one spends its time.

Writes ``DIR/<scenario>/<service>.txt`` (py-spy's raw collapsed stacks, for a
flame graph: ``flamegraph.pl`` or speedscope.app read them) and
``DIR/<scenario>/summary.md`` (per service: the functions with the most samples
on the stack, and the innermost ones). Idle time (waiting in the event loop) is
not sampled, so the counts are CPU, roughly. py-spy is pinned in
requirements/dev.txt; it samples from outside, without pausing the process.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

_LINE_NUMBER = re.compile(r":\d+\)$")
RATE = 100


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def record(pids: Mapping[str, int], out_dir: Path, delay: float, duration: float) -> None:
    """Sample every process in ``pids`` for ``duration`` seconds, starting after ``delay``."""
    tool = py_spy()
    if tool is None:
        print("bench: --profile needs py-spy (pip install -r requirements/dev.txt)", file=sys.stderr)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.sleep(delay)
    procs = []
    for name, pid in pids.items():
        command = [tool, "record", "--pid", str(pid), "--duration", str(max(1, round(duration))), "--rate", str(RATE)]
        command += ["--nonblocking", "--format", "raw", "--output", str(out_dir / f"{name}.txt")]
        procs.append(await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), duration + 30)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    (out_dir / "summary.md").write_text(summarise(out_dir, list(pids)), encoding="utf-8")


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    frames = [_LINE_NUMBER.sub(")", f) for f in stack.split(";") if f]
    return frames, int(count)


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame's file is in."""
    location = frame.rpartition(" (")[2].rstrip(")")
    head = location.split("/", 1)[0]
    return head.removesuffix(".py") if head else "?"


def summarise(out_dir: Path, names: list[str], top: int = 12) -> str:
    """Per service: self time by package (where the CPU is actually spent), and the
    project's own functions by time on the stack (which code path pays for it)."""
    lines = [f"# Where the time goes ({out_dir.name})", "", f"py-spy samples at {RATE}/s of each service; idle time is not sampled.", ""]
    for name in names:
        path = out_dir / f"{name}.txt"
        if not path.is_file():
            continue
        own: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        total = 0
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            frames, count = _frames(raw)
            if not frames:
                continue
            total += count
            packages[_package(frames[-1])] += count
            for frame in set(frames):
                if _package(frame).startswith("carevault_") and not frame.startswith(("main (", "service_main (", "run (", "serve (")):
                    own[frame] += count
        if total < 50:
            continue
        lines += [
            f"## {name}: {total} samples",
            "",
            "| self time by package | % | carevault code on the stack | % |",
            "|---|---:|---|---:|",
        ]
        rows = list(zip(packages.most_common(top), own.most_common(top), strict=False))
        rows += [(pkg, ("", 0)) for pkg in packages.most_common(top)[len(rows) :]]
        for (package, n_p), (frame, n_f) in rows:
            own_cell = f"`{frame}` | {100 * n_f / total:.0f}" if frame else " | "
            lines.append(f"| {package} | {100 * n_p / total:.0f} | {own_cell} |")
        lines.append("")
    return "\n".join(lines)
