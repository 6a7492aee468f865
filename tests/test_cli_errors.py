"""Model-source and device errors of every CLI command: one line on stderr, non-zero exit, no traceback.

The commands are walked from `cli.COMMANDS` (so commands added later are covered when they take
`--model`, `--base`, `--device` or a model-source positional), each with its required arguments
filled in with paths under tmp.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_reference_checkpoint

from nnsight_codi import cli

MISSING = "/nonexistent/dir"
HUB = "zen-E/CODI-gpt2"  # a registry checkpoint: needs network, which the tests never have
SOURCE_POSITIONALS = ("src", "model", "source")
# valid values of the options a command checks before it looks at its model (flags fail first, by design)
VALID_OPTIONS = {"steer": {"--mode": "patch", "--patch": "zero"}}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _required(sub: argparse.ArgumentParser, tmp: Path, skip: set[str]) -> list[str]:
    """Values for the required options and positionals (fresh paths under tmp, or `VALID_OPTIONS`)."""
    valid = VALID_OPTIONS.get(sub.prog.split()[-1], {})
    argv: list[str] = [item for option, value in valid.items() for item in (option, value)]
    for i, action in enumerate(sub._actions):
        if action.dest in skip or action.dest == "help" or set(action.option_strings) & set(valid):
            continue
        if not action.option_strings:
            if action.nargs in ("?", "*"):
                continue
            argv.append(str(tmp / f"pos{i}"))
        elif action.required:
            argv += [action.option_strings[0], str(tmp / f"opt{i}")]
    return argv


def _cases(tmp: Path, checkpoint: Path | None = None) -> list[tuple[str, list[str], str]]:
    """(command, argv, text the error line must contain) for every command's model source / device.

    `checkpoint`: a real reference checkpoint, the good source beside a missing `--base`.
    """
    cases = []
    for name, sub in _subparsers().items():
        options = {s: a for a in sub._actions for s in a.option_strings}
        positionals = [a for a in sub._actions if not a.option_strings]
        source_pos = next((a for a in positionals if a.dest in SOURCE_POSITIONALS), None)
        if "--model" in options:
            rest = _required(sub, tmp, {"model"})
            cases += [(name, [name, "--model", MISSING, *rest], MISSING),
                      (name, [name, "--model", HUB, *rest], HUB)]
            if "--base" in options and checkpoint is not None:
                cases.append((name, [name, "--model", str(checkpoint), "--base", MISSING, *rest], MISSING))
        elif "--base" in options and source_pos is None:  # train: the model source is the base model
            cases.append((name, [name, "--base", MISSING, *_required(sub, tmp, {"base"})], MISSING))
        if source_pos is not None:  # convert SRC DST [--base BASE]
            index = positionals.index(source_pos)
            for bad in (MISSING, HUB):
                values = [str(tmp / f"pos{i}") for i in range(len(positionals))]
                values[index] = bad
                cases.append((name, [name, *values], bad))
            if "--base" in options and checkpoint is not None:
                values = [str(tmp / f"pos{i}") for i in range(len(positionals))]
                values[index] = str(checkpoint)
                cases.append((name, [name, *values, "--base", MISSING], MISSING))
        if "--device" in options:
            cases.append((name, [name, "--device", "tpu", *_required(sub, tmp, {"device"})], "tpu"))
        if name == "info":  # a store, not a model: still one line
            cases.append((name, [name, MISSING], MISSING))
    return cases


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_every_command_is_walked(tmp_path):
    walked = {name for name, _, _ in _cases(tmp_path)}
    assert {"eval", "capture", "convert", "train", "demo", "info"} <= walked
    for name, sub in _subparsers().items():  # anything that loads a model is in the walk
        dests = {a.dest for a in sub._actions}
        if dests & {"model", "device", "base", *SOURCE_POSITIONALS}:
            assert name in walked


def test_model_source_and_device_errors_are_one_line(tmp_path, capsys):
    checkpoint = make_reference_checkpoint(tmp_path / "ckpt", "gpt2")["path"]
    cases = _cases(tmp_path, checkpoint)
    assert sum("--base" in argv for _, argv, _ in cases) >= 4  # eval, capture, convert, train
    for name, argv, needle in cases:
        capsys.readouterr()
        code = cli.main(argv)  # an uncaught exception (a traceback) fails the test here
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert code != 0, argv
        assert len(lines) == 1, (argv, captured.err)
        assert needle in lines[0] and "Traceback" not in captured.err, (argv, lines[0])
        assert "Repo id must" not in lines[0], (argv, lines[0])
    # the three reported in the issue, word for word
    for argv, text in ((["eval", "--model", MISSING], f"{MISSING}: no such file or directory, and not a known hub id"),
                       (["eval", "--device", "tpu"], "unknown device 'tpu'"),
                       (["eval", "--model", HUB], "no network")):
        assert cli.main(argv) == 2
        assert text in capsys.readouterr().err


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--lora-mode", "sideways"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--lora-mode" in err and "invalid choice" in err


def test_console_process_prints_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(cli.__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "nnsight_codi", "eval", "--model", MISSING],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"nnsight-codi eval: error: {MISSING}: no such file or directory, and not a known hub id"
