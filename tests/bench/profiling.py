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


def summarise(out_dir: Path, names: list[str], top: int = 15) -> str:
    lines = [f"# Where the time goes ({out_dir.name})", "", f"py-spy samples at {RATE}/s of each service; idle time is not sampled.", ""]
    for name in names:
        path = out_dir / f"{name}.txt"
        if not path.is_file():
            continue
        inclusive: Counter[str] = Counter()
        innermost: Counter[str] = Counter()
        total = 0
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            frames, count = _frames(raw)
            total += count
            for frame in set(frames):
                inclusive[frame] += count
            if frames:
                innermost[frames[-1]] += count
        if total == 0:
            continue
        lines += [f"## {name}: {total} samples", "", "| on the stack | % | innermost | % |", "|---|---:|---|---:|"]
        incl = [f for f in inclusive.most_common() if not f[0].startswith(("<module>", "run (", "run_forever", "_run_once", "serve ("))]
        for (frame_i, n_i), (frame_s, n_s) in zip(incl[:top], innermost.most_common(top), strict=False):
            lines.append(f"| `{frame_i}` | {100 * n_i / total:.0f} | `{frame_s}` | {100 * n_s / total:.0f} |")
        lines.append("")
    return "\n".join(lines)
