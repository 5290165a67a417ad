"""`run --all --pretrain-jobs N --pretrain-only`: the options are checked before anything runs. The runs
pre-trained N at a time, MCF-style's teacher first, then reused by the evaluation: the first stage of
tests/test_toy_study.py (one pre-training serves both, and the device study's one-call script)."""


def test_pretrain_jobs_and_only_are_checked():
    from types import SimpleNamespace

    from bench_tasks.plan.validate import check_args

    base = dict(tasks=None, datasets=None, protocols=None, seeds=None, fractions=None, device="cpu",
                backbones=None, all=True, pretrain_override=None, profile="smoke")
    assert any("--pretrain-jobs 0" in p for p in check_args(SimpleNamespace(**base, pretrain_jobs=0)))
    probs = check_args(SimpleNamespace(**{**base, "backbones": "random:vit_tiny"}, pretrain_only=True))
    assert any("--pretrain-only needs" in p for p in probs)
