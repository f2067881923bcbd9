"""The type checker runs in the suite: mypy on samrs/ with the configuration in pyproject.toml
(unused ``# type: ignore`` comments are errors; every module is checked), and every ``# type: ignore`` left in samrs/ names
its error code and says why: ``# type: ignore[code]  # why`` (issue 19)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<code>\[[^\]]+\])?(?P<rest>.*)")
_REASON = re.compile(r"\s*#\s*\S")


def unjustified_ignores(source: str) -> list[int]:
    """Lines of ``source`` whose ``# type: ignore`` comment lacks an error code or a reason
    (a comment after it on the same line). Only comments count, not strings."""
    lines = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        found = _IGNORE.search(token.string)
        if found and not (found["code"] and _REASON.match(found["rest"])):
            lines.append(token.start[0])
    return lines


@pytest.mark.parametrize(
    ("line", "justified"),
    [
        ("x = f()  # type: ignore[arg-type]  # stubs: f takes any str", True),
        ("x = f()  # type: ignore[arg-type, misc]  # two codes, one reason", True),
        ("x = f()  # type: ignore[arg-type]", False),
        ("x = f()  # type: ignore[arg-type]  #", False),
        ("x = f()  # type: ignore[arg-type]  # ", False),
        ("x = f()  # type: ignore  # no code", False),
        ("x = f()  # type: ignore", False),
        ("x = f()  #type:ignore[misc]", False),
        ("x = f()  # why first  # type: ignore[misc]", False),
        ("x = f()  # a plain comment", True),
        ("x = '# type: ignore'  # a string, not a comment", True),
    ],
)
def test_unjustified_ignores_finds_ignores_without_code_or_reason(
    line: str, justified: bool
) -> None:
    source = f"import os\n{line}\n"
    assert unjustified_ignores(source) == ([] if justified else [2])


def test_every_type_ignore_in_samrs_has_a_code_and_a_reason() -> None:
    found = []
    for path in sorted((ROOT / "samrs").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        found += [f"{name}:{n}" for n in unjustified_ignores(path.read_text(encoding="utf-8"))]
    assert not found, "write `# type: ignore[code]  # why` (or fix the type): " + ", ".join(found)


@pytest.mark.slow
def test_mypy_checks_samrs_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
