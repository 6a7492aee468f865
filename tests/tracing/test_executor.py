"""The model picks its executor: direct, or a session (with the LoRA adapter for a base + LoRA model)."""

from __future__ import annotations


def test_the_model_picks_its_executor(tmp_path):
    from factories import make_reference_checkpoint

    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import DirectExecutor
    from nnsight_codi.tracing.session import SessionExecutor

    codi = load_model("tiny")
    assert isinstance(codi.executor(None), DirectExecutor)
    assert isinstance(codi.executor("local"), SessionExecutor) and codi.executor("local").adapter is None
    assert load_model("tiny", ndif_repo_id="org/tiny-codi").ndif_repo_id == "org/tiny-codi"
    ref = make_reference_checkpoint(tmp_path, "gpt2")
    inter = load_model(ref["path"], base=str(ref["base_dir"]), lora_mode="interventions", ndif_repo_id="org/base")
    assert inter.ndif_repo_id == "org/base"
    for remote in (None, "local"):
        executor = inter.executor(remote)
        assert isinstance(executor, SessionExecutor) and executor.adapter is not None
        assert executor.model is inter.session_model(remote)  # built and weight-checked once per remote
