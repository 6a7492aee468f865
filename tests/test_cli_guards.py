"""Every command's output path and count flags are checked before any work (`commands/outdir.py`,
`commands/common.check_minimums`): a wrong one is one line on stderr and exit status 2.

The model loaders, the trainer and the writers are replaced by functions that fail the test, so a
check that came after the work had started would show up as an error here, not as a slow test.
Artifacts are made from their marker files (what `artifact_at` reads), except the capture store the
dashboard opens, which is a real one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from nnsight_codi import cli
from nnsight_codi.commands.common import MINIMUM
from nnsight_codi.commands.outdir import WRITES, artifact_at
from nnsight_codi.store.layout import STORE_FORMAT

_spec = importlib.util.spec_from_file_location("dashboard_stores", Path(__file__).parent / "dashboard" /
                                               "dashboard_stores.py")
dashboard_stores = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dashboard_stores)

WORK = ["nnsight_codi.loading.load_codi_model", "nnsight_codi.commands.common.load_codi_model",
        "nnsight_codi.loading.load_instruct_model", "nnsight_codi.training.trainer.train",
        "nnsight_codi.dashboard.write_dashboard", "nnsight_codi.interventions.steering_sweep.run_sweep",
        "nnsight_codi.models.checkpoint.find_checkpoint_file", "nnsight_codi.evaluation.evaluate",
        "nnsight_codi.activation_capture.run_capture", "nnsight_codi.lens.lens_training.train_tuned_lens"]


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for target in WORK:
        module, _, name = target.rpartition(".")
        monkeypatch.setattr(importlib.import_module(module), name, started)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def make(kind: str, path: Path) -> Path:
    """A directory (or file) that `artifact_at` reads as `kind`."""
    files = {"capture store": {"zarr.json": json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
                                   "format": STORE_FORMAT, "variables": ["hidden"]}})},
             "CoT vector store": {"zarr.json": json.dumps({"attributes": {"format": STORE_FORMAT,
                                                                          "variables": ["steering_diff"]}})},
             "tuned lens": {"config.json": "{}", "params.pt": ""},
             "CODI model": {"codi.json": "{}", "config.json": "{}"},
             "model": {"config.json": "{}", "model.safetensors": ""},
             "training run": {"train_config.json": "{}", "log.jsonl": "", "checkpoint/state.pt": ""},
             "sweep": {"sweep.zarr/zarr.json": "{}"},
             "dashboard": {"index.html": "<html>"},
             "predictions": {"predictions.jsonl": "", "summary.json": "{}"},
             "demo": {"index.html": "<html>", "eval/summary.json": "{}"}}
    if kind == "CoT grid file":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"grid": {}}\n')
        return path
    for name, text in files[kind].items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def listing(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


def argv_for(command: str, out: str, tmp: Path) -> list[str]:
    """`command` with `out` as its output path and every other required argument filled in."""
    store, cfg = tmp / "in.zarr", tmp / "sweep.json"
    if not store.exists():
        make("capture store", store)
        cfg.write_text("{}")
        make("CoT vector store", tmp / "cot.zarr")
    return {
        "capture": ["capture", "--out", out],
        "train": ["train", "--out", out, "--steps", "2"],
        "lens train": ["lens", "train", "--out", out],
        "dashboard": ["dashboard", str(store), "--out", out],
        "eval": ["eval", "--out", out],
        "steer": ["steer", "--mode", "patch", "--patch", "zero", "--out", out],
        "sweep": ["sweep", str(cfg), "--out", out],
        "cot-vectors extract": ["cot-vectors", "extract", "--out", out],
        "cot-vectors sweep": ["cot-vectors", "sweep", "--vectors", str(tmp / "cot.zarr"), "--layers", "1",
                              "--coefs", "1", "--out", out],
        "cot-vectors eval": ["cot-vectors", "eval", "--out", out],
        "convert": ["convert", str(tmp / "ckpt"), out],
        "demo": ["demo", "--studies", "none", "--out", out],
    }[command]


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser by its name (`lens train`, `cot-vectors sweep`, ...)."""
    found = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[prefix.strip()] = parser
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, f"{prefix} {name}")

    walk(cli.build_parser(), "")
    return found


def required(parser: argparse.ArgumentParser, tmp: Path) -> list[str]:
    """Paths (that do not exist) for a parser's positionals and required options."""
    argv = []
    for action in parser._actions:
        if not action.option_strings and action.nargs not in ("?", "*"):
            argv.append(str(tmp / "missing"))
        elif action.required and action.option_strings:
            argv += [action.option_strings[0], str(tmp / "missing")]
    return argv


def run(argv: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, argv
    return code, [line for line in err.splitlines() if line.strip()]


def test_every_command_with_an_output_path_is_guarded():
    with_out = {name for name, p in parsers().items() if {a.dest for a in p._actions} & {"out", "dst"}}
    assert with_out == set(WRITES)


@pytest.mark.parametrize("command", sorted(WRITES))
def test_another_artifact_is_refused_before_any_work(command, tmp_path, capsys):
    other = "model" if command == "capture" else "capture store"  # capture: a model directory, as in the issue
    target = make(other, tmp_path / "target")
    before = listing(target)
    code, lines = run(argv_for(command, str(target), tmp_path), capsys)
    assert code == 2 and len(lines) == 1, lines
    assert f"holds a {other}, not a {WRITES[command]}" in lines[0] and lines[0].startswith("nnsight-codi")
    assert listing(target) == before
    # inside a store: refused as well, and nothing is created there
    code, lines = run(argv_for(command, str(tmp_path / "target" / "sub"), tmp_path), capsys)
    assert code == 2 and len(lines) == 1 and f"inside a {other}" in lines[0], lines
    assert listing(target) == before


@pytest.mark.parametrize("command", sorted(WRITES))
def test_a_file_or_directory_of_the_wrong_shape_is_refused(command, tmp_path, capsys):
    if WRITES[command] == "CoT grid file":
        target = tmp_path / "grid"
        target.mkdir()
        needle = "is a directory"
        other = tmp_path / "notes.txt"
        other.write_text("notes")
        code, lines = run(argv_for(command, str(other), tmp_path), capsys)
        assert code == 2 and len(lines) == 1 and "is a file of another kind" in lines[0], lines
    else:
        target = tmp_path / "out.txt"
        target.write_text("notes")
        needle = "is a file"
    code, lines = run(argv_for(command, str(target), tmp_path), capsys)
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines


def test_every_kind_is_recognised_and_a_plain_directory_is_not(tmp_path):
    for kind in {*WRITES.values(), "model"}:
        name = kind.replace(" ", "_") + (".jsonl" if kind == "CoT grid file" else "")
        assert artifact_at(make(kind, tmp_path / name)) == kind
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    assert artifact_at(tmp_path / "notes") is None and artifact_at(tmp_path / "absent") is None


def test_same_artifact_is_resumed_or_refused_as_documented(tmp_path, capsys):
    run_dir = make("training run", tmp_path / "run")
    code, lines = run(["train", "--out", str(run_dir), "--steps", "2"], capsys)
    assert code == 2 and len(lines) == 1 and "continue it with --resume" in lines[0]
    (run_dir / "checkpoint" / "state.pt").unlink()  # a run that never reached a checkpoint starts over
    with pytest.raises(AssertionError, match="work started"):
        cli.main(["train", "--out", str(run_dir), "--steps", "2"])
    lens = make("tuned lens", tmp_path / "lens")
    code, lines = run(["lens", "train", "--out", str(lens)], capsys)
    assert code == 2 and len(lines) == 1 and "holds a trained lens" in lines[0]
    (lens / "params.pt").unlink()  # an interrupted lens (checkpoint only) resumes: past the guard, to the model
    (lens / "checkpoint.pt").write_text("")
    with pytest.raises(AssertionError, match="work started"):
        cli.main(["lens", "train", "--out", str(lens)])
    converted = make("CODI model", tmp_path / "converted")
    code, lines = run(["convert", str(tmp_path / "ckpt"), str(converted)], capsys)
    assert code == 2 and "not empty" in lines[0]
    real = dashboard_stores.make_store(tmp_path / "real.zarr", n=2)
    assert artifact_at(real) == "capture store"  # a store the writer made, not only the marker files
    for command in ("eval", "dashboard", "capture"):  # replaced / resumed: the command goes on to its work
        target = make(WRITES[command], tmp_path / command)
        argv = argv_for(command, str(target), tmp_path)
        with pytest.raises(AssertionError, match="work started"):
            cli.main([str(real) if a.endswith("in.zarr") else a for a in argv])
    # each output path's help says what happens to an existing artifact
    for name, parser in parsers().items():
        if name in WRITES:
            action = next(a for a in parser._actions if a.dest in ("out", "dst"))
            assert "refused" in (action.help or ""), name


def test_dashboard_layer_out_of_range_or_without_lens(tmp_path, capsys):
    plain = dashboard_stores.make_store(tmp_path / "plain.zarr", n=3, lens=False)
    code, lines = run(["dashboard", str(plain), "--out", str(tmp_path / "d"), "--layer", "9"], capsys)
    assert code == 2 and len(lines) == 1 and "--layer 9: the store has no lens read-outs" in lines[0]
    lens = dashboard_stores.make_store(tmp_path / "lens.zarr", n=3)
    code, lines = run(["dashboard", str(lens), "--out", str(tmp_path / "d"), "--layer", "3"], capsys)
    assert code == 2 and len(lines) == 1 and "--layer 3 out of range: the store's lens layers are 0..2" in lines[0]
    assert not (tmp_path / "d").exists()


def test_count_flags_below_their_minimum_are_one_line(tmp_path, capsys):
    checked = set()
    for name, parser in parsers().items():
        if name == "lm-eval":
            continue
        for action in parser._actions:
            if action.dest in MINIMUM and action.option_strings:
                out = str(tmp_path / "fresh")
                base = argv_for(name, out, tmp_path) if name in WRITES else [*name.split(), *required(parser, tmp_path)]
                argv = [*base, action.option_strings[0], str(MINIMUM[action.dest] - 1)]
                code, lines = run(argv, capsys)
                assert code == 2 and len(lines) == 1, (argv, lines)
                assert f"--{action.dest.replace('_', '-')} must be >= {MINIMUM[action.dest]}" in lines[0], lines
                checked.add((name, action.dest))
    assert {("eval", "limit"), ("capture", "lens_k"), ("dashboard", "top_k"), ("steer", "reference_limit"),
            ("lens train", "train_batch"), ("demo", "examples"), ("cot-vectors sweep", "batch_size"),
            ("train", "steps")} <= checked


def test_steer_layers_is_now_blocks(capsys):
    code, lines = run(["steer", "--mode", "kv", "--pair", "1,2", "--layers", "0,1"], capsys)
    assert code == 2 and len(lines) == 1 and "steer takes --blocks 0,1" in lines[0]
    assert "residual layers 0..L" in lines[0]
    args = cli.build_parser().parse_args(["steer", "--mode", "kv", "--pair", "1,2", "--blocks", "0,1"])
    from nnsight_codi.commands.steer import condition_from_args

    assert condition_from_args(args).blocks == (0, 1)
