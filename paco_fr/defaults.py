"""Every pre-training config key and its default value (`DEFAULTS`), at the bottom of paco_fr: the
config loader (paco_fr.config) merges configs onto it, the objective registry adds a new
objective's section to it (paco_fr.models.registry), and modules that document a default read it."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    "name": None,
    "objective": "paco",  # a registered objective: paco | mae | farl | mcf | simmim (paco_fr.models)
    "seed": 0,
    "model": {
        "arch": "vit_tiny",
        "img_size": 64,
        "patch_size": 8,
        "depth": None,  # override the arch's depth (tiny test/smoke models)
        "drop_path": 0.0,
    },
    "decoder": {"dim": 128, "depth": 2, "heads": 4},
    "mask": {
        "strategy": "region",  # random | block | region
        "ratio": 0.5,
        "fill": "adjacent",  # region/block top-up rule: adjacent | random
        "region_rule": "whole_then_fill",  # whole_then_fill | partial_last
        # region maps: canonical = the canonical map of the aligned face (label-free: the default) |
        # landmarks = each face's own map from the landmarks the data comes with (SynthFace's true
        # 68, a user's 5-point file; supervision, recorded as labels_used; the study's
        # abl_regions_gt), the canonical map where a face has none
        "regions": "canonical",
        # what a selected patch becomes (paco): codebook = a codebook token pasted in pixel space
        # (PaCo-FR) | mask_token = a learned mask token in the encoder's embedding space (control:
        # no codebook, no Belief Predictor, SimMIM-style full sequence)
        "replace": "codebook",
    },
    "codebook": {
        "num_tokens": 512,
        "k": 4,  # candidate tokens per patch
        "candidates": "belief",  # belief (top-k of predictor logits) | nearest (top-k by pixel distance)
        "selection": "mix",  # mix | hard | gumbel
        "temperature": 1.0,
        "gumbel_hard": False,
        "update": "ema",  # ema | grad
        "decay": 0.99,
        "commitment": 0.0,
        "dead_threshold": 0.5,  # EMA cluster size below which a code is dead
        "restart_every": 50,  # steps; 0 disables dead-code restart
        "chunk_size": 2048,
        # space the entries live and are clustered in: norm_pix = per-patch mean/std-normalised
        # patches (the loss target's space), pasted with the replaced patch's own mean/std |
        # pixel = backbone-normalised pixels (tokens are colour clusters)
        "space": "norm_pix",
    },
    # detach_weights: true = the predictor is trained by cross-entropy only (no reconstruction
    # gradient through the mixing weights; the CE-only control)
    "belief": {"hidden": 256, "pos_dim": 32, "detach_weights": False},
    "incubation": {
        "epochs": 1.0,  # first epoch(s): belief predictor supervised by CE to the nearest token
        "steps": None,  # if set, overrides epochs
        "ce_weight": 1.0,
        "after_ce_weight": 0.05,  # small continued CE after incubation
        "detach_recon": True,  # during incubation the predictor gets only the CE gradient
    },
    "spatial": {
        "weight": 0.25,  # 0 disables the spatial consistency term (and the second view unless keep_views)
        "pairing": "split",  # split: B/2 images x 2 views (same cost) | repeat: B images x 2 views
        "keep_views": False,  # True: two views even with weight 0 (same distinct images per step)
        # correspondence: cross-view InfoNCE over standardised region features (docs/pretraining.md)
        # | gram_mse: MSE of cosine relation matrices (the earlier form: inert, zero when collapsed)
        "form": "correspondence",
        "temperature": 0.2,
        "center_batch": False,  # also centre each region's features over the images of the batch
        "stop_grad": False,  # True: view 2 is a stop-grad target
        "layer": -1,  # encoder block whose patch tokens are region-pooled (-1 = final, normed)
    },
    # grad_norms: at log steps, the gradient norm of each loss term w.r.t. the encoder (one extra
    # backward per term: a measured step costs 1.7-2x a plain one; skipped under torch.compile and
    # DDP); grad_every: only at log steps that are multiples of it (0 = every log step), and the last
    "diagnostics": {"grad_norms": True, "grad_every": 0},
    "loss": {"norm_pix": True, "on": "masked", "type": "mse"},  # on: masked | all
    "mae": {"mask_ratio": 0.75},
    "farl": {
        "mask_ratio": 0.4,
        "mim_weight": 1.0,
        "itc_weight": 1.0,
        "embed_dim": 128,
        "text_width": 128,
        "text_depth": 2,
        "text_heads": 4,
        "max_len": 32,
        # FaRL-style captions (paco_fr/data/captions.py): LAION-like alt-text is partial and noisy, so
        # by default a caption names a few attributes (some wrong), is sometimes generic, and often
        # drops or garbles the expression. mode=oracle (every true label, the old template) is a
        # supervised upper bound, never "FaRL-style".
        "captions": {
            "mode": "noisy",  # noisy | oracle
            "max_attributes": 3,  # attributes named per caption: uniform in 0..max_attributes
            "wrong_attribute_prob": 0.25,  # each named attribute is one the face does NOT have
            "generic_prob": 0.2,  # caption is a generic sentence with no label in it
            "expression_drop_prob": 0.5,  # no expression word
            "expression_wrong_prob": 0.2,  # of the kept expression words, a wrong expression
            "gender_wrong_prob": 0.1,  # man <-> woman swapped
            "person_word_prob": 0.3,  # "person" instead of man / woman
        },
    },
    "mcf": {
        # required: path to an exported encoder (.safetensors) / .pth with timm keys, pre-trained on images
        # disjoint from this run's (the study trains `mcf_teacher` on SynthFace's `teacher` split);
        # `random` only for tests / throughput probes
        "teacher": None,
        "teacher_arch": None,
        "teacher_layers": None,  # default: [2,5,8,11] scaled to depth
        "mask_ratio": 0.75,
        "perceptual_weight": 1000.0,
        "pixel_weight": 0.0,
        "contrastive_weight": 1.0,
        "momentum": 0.99,
        "temperature": 0.2,
        "proj_dim": 256,
        "proj_hidden": 1024,
    },
    "data": {
        "source": "synthface",  # synthface | folder | tar | landmarks | wds
        "split": "pretrain",
        "num_images": 2000,
        # the data's own seed (SynthFace: which faces; captions): None = the run's `seed`. Runs of
        # one method with several pre-training seeds set it to one value (the same images)
        "seed": None,
        "root": None,
        "path": None,  # folder / tar glob / image root for landmarks
        "landmarks_file": None,  # lines: relpath x1 y1 ... x5 y5
        "hflip": True,
        "num_workers": 0,
        "shuffle_buffer": 2000,  # data.source=wds: samples per loader worker's shuffle buffer
    },
    "train": {
        "batch_size": 32,  # per process, per micro-batch
        "steps": 300,  # total optimizer steps (if epochs is None)
        "epochs": None,
        "grad_accum": 1,
        "lr": 1.5e-4,
        "min_lr": 1.0e-6,
        "warmup_steps": 20,
        "weight_decay": 0.05,
        "betas": [0.9, 0.95],
        "clip_grad": 3.0,
        "amp": "auto",  # auto (bf16 on cuda) | bf16 | off
        "compile": False,
        "ema": 0.0,  # EMA decay of the whole model; 0 = off
        "log_every": 10,
        "snapshot_every": 100,
        "ckpt_every": 100,
        "progress": True,
        "deterministic": False,
        "device": "auto",
        "threads": None,
        "interrupt_at_step": None,  # testing: raise SIGTERM in-process after this step
        "fsdp": False,
    },
    "export": {"use_ema": True},
}
