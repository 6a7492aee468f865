"""Teacher-only / short pilot runs behind the measurements table in assets/tiny-codi/TRAINING.md.

    python runs/pilot_tiny.py NAME STEPS TEACHER_WARMUP_STEPS [JSON TrainConfig overrides]
    e.g. python runs/pilot_tiny.py four 400 400 '{"number_init": "fourier"}'

Trains into out/pilot-NAME (1 thread) and prints the teacher CoT accuracy on 256 held-out problems.
"""
import os, sys, json
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
from nnsight_codi.training.config import TrainConfig
from nnsight_codi.training.trainer import train
from nnsight_codi.training.report import load_trained
from nnsight_codi.training.evaluate import evaluate_teacher, evaluate_student
from nnsight_codi.data.synthetic import generate_problems
name, steps, tw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kw = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
cfg = TrainConfig(out=f"out/pilot-{name}", steps=steps, teacher_warmup_steps=tw, train_size=steps*64+1000, eval_size=256,
                  eval_every=0, checkpoint_every=0, progress=False, threads=1, num_latents=6, student_weight=5, **kw)
m = train(cfg)
model, prj, tok, c = load_trained(f"out/pilot-{name}/model")
ids = {"pad_id": c.pad_id, "bot_id": c.bot_id, "eot_id": c.eot_id, "eos_id": c.eos_id}
ds = generate_problems(256, seed=1000003, value_range=(0,99), min_steps=2, max_steps=3, add_range=(1,cfg.add_max), mul_range=(2,cfg.mul_max))
q, a = list(ds["question"]), list(ds["answer"])
rt = evaluate_teacher(model, tok, q, a, ids=ids)
out = {"name": name, "time": m["train_seconds"], "teacher_cot": rt.accuracy, "hist": m["history"][-2:]}
if tw < steps:
    out["student"] = evaluate_student(model, prj, tok, q, a, num_latents=6, ids=ids).accuracy
print(json.dumps(out))
