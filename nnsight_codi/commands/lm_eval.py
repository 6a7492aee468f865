r"""`nnsight-codi lm-eval`: lm-eval's own command line, with this project's model and tasks registered.

Everything after `lm-eval` goes to lm-eval's CLI (`lm-eval run|ls|validate`; no subcommand means
`run`, as with `lm_eval`), so every lm-eval flag works (`--model_args`, `--batch_size`, `--device`,
`--gen_kwargs`, `--seed`, `--log_samples`, `--predict_only`, `--output_path`, `--limit`,
`--num_fewshot`, `--apply_chat_template`, `--metadata`, `--include_path`, …) and the output files are
lm-eval's (`<output_path>/<model>/results_<time>.json`, `samples_<task>_<time>.jsonl`). Two
additions: the model `nnsight-codi` is registered (and is the default `--model`), and the shipped
task directory is always on the include path, so the local tasks `nnsight_codi_synthetic` and
`nnsight_codi_gsm8k_local` resolve by name.

Examples::

    nnsight-codi lm-eval --model_args model=tiny --tasks nnsight_codi_synthetic --limit 50
    nnsight-codi lm-eval --model nnsight-codi --model_args model=out/codi-gpt2 --device cuda --batch_size 64 \
        --tasks nnsight_codi_gsm8k_local --output_path out/lm-eval --log_samples
    nnsight-codi lm-eval --model_args model=tiny-instruct,prompt_mode=direct,condition=continuous:2:4,vectors=V.zarr \
        --tasks nnsight_codi_synthetic
    nnsight-codi lm-eval --model hf --model_args pretrained=gpt2 --tasks nnsight_codi_synthetic   # lm-eval's own model
    nnsight-codi lm-eval ls tasks

nnsight-codi model args: model, dtype, remote (local|ndif|URL), ndif_model (CODI on NDIF), base,
lora_mode, vectors, condition (direct|single:L:C|continuous:L:C), prompt_mode (raw|cot|direct),
num_latents, masking, max_gen_toks, max_length, add_bos_token, prefix_token_id, seed (device and
batch_size are lm-eval's flags). Local task data: `--metadata gsm8k_file=PATH`, and for the
synthetic task `min_steps`, `max_steps`, `value_max`, `ops`, `synthetic_size`, `synthetic_seed`,
`synthetic_file` (default: the model's recorded training distribution).
"""

from __future__ import annotations

import argparse
import types

MODEL = "nnsight-codi"


def register(subparsers) -> argparse.ArgumentParser:
    """Listed in `nnsight-codi --help`; `cli.main` hands the arguments to `run_cli` unparsed."""
    return subparsers.add_parser("lm-eval", help="lm-eval's command line with the nnsight-codi model and tasks",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 add_help=False)


def _one_line_error(self: argparse.ArgumentParser, message: str):
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag_given(argv: list[str], *names: str) -> bool:
    return any(a in names or any(a.startswith(n + "=") for n in names if n.startswith("--")) for a in argv)


def harness_cli():
    """lm-eval's `HarnessCLI` named `nnsight-codi lm-eval`, its usage errors one line."""
    from lm_eval._cli import HarnessCLI

    cli = HarnessCLI()
    for parser in [cli._parser, *cli._subparsers.choices.values()]:
        parser.prog = parser.prog.replace("lm-eval", "nnsight-codi lm-eval", 1)
        parser.error = types.MethodType(_one_line_error, parser)
    return cli


def run_cli(argv: list[str]) -> int:
    """Run lm-eval's CLI on `argv` with `nnsight-codi` registered and the shipped tasks included."""
    from lm_eval.utils import setup_logging

    import nnsight_codi.harness  # noqa: F401  (registers the model)
    from nnsight_codi.harness.tasks import TASKS_DIR

    argv = list(argv)
    cli = harness_cli()
    commands = cli._subparsers.choices
    if len(argv) >= 2 and argv[0] not in commands:  # lm-eval's legacy form: `run` implied
        argv.insert(0, "run")
    if argv and argv[0] == "run" and not _flag_given(argv, "--model", "-M", "--config", "-C"):
        argv[1:1] = ["--model", MODEL]
    setup_logging()
    try:
        args = cli._parser.parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed on one line
        return int(done.code or 0)
    if getattr(args, "command", None) in ("run", "validate", "ls"):
        user = getattr(args, "include_path", None)
        args.include_path = [str(TASKS_DIR)] + ([user] if user else [])
    try:
        cli.execute(args)
    except TypeError as err:
        if "multiple values for keyword argument" in str(err):
            name = str(err).rsplit(" ", 1)[-1].strip("'")
            raise ValueError(f"{name} is given twice (lm-eval passes --{name} to the model itself): "
                             f"drop it from --model_args and give --{name}") from None
        raise
    return 0
