"""How a checkpoint draws: the two settings chosen on the validation split and kept beside it.

The refine steps: how many decode-encode round trips (model.refine_latents) a sampler's latents take. One
step brings some models' samples to their reconstructions' FID and crowds others', so it is chosen per
checkpoint and sampler: 0 or 1, whichever gives the lower validation FID of the class samples.

The sky fraction: a model trained with --sky-noise F draws every image with F times the training sky's
noise. Noise helps FID on some surveys and costs it on others (docs/results.md), so --sky-noise auto
chooses among none, half and all of F, whichever gives (with its own refine steps) the lower validation
FID; never more noise than the model was trained to draw, so SSIM can only gain.

Both are measured only when asked (generate.py --evaluate --split val) and kept in refine_steps.json; a
draw (generate.py, explore.py) reads that record and never measures.
"""
import json
from pathlib import Path

import fid
from cli import InputError
from devices import forked_rng
from evaluation import fid_counts, fid_table, real_activations
from files import atomic_output, set_aside, sha256_of
from model import check_sky_noise, decode_latents, refine_latents
from morphology import band_sky_noise
from samplers import (CLASS_CONFIDENCE, DEFAULT_COMPONENTS, DEFAULT_SAMPLER, MIXTURE_FIT, class_model_at,
                      fit_training_sampler)

REFINE_RECORD = "refine_steps.json"  # beside the checkpoint: generate.py and explore.py draw alike
REFINE_CHOICE_SAMPLES = 549  # N of the choice's FIDs (seed 0 whatever --seed): the whole validation split of
# the embedded set and of Galaxy10 (183 a class), capped by smaller splits


def parse_refine_steps(text):
    """--refine-steps: "auto" or a whole number >= 0, else InputError."""
    if text != "auto" and not (text.isdigit() and text.isascii()):
        raise InputError(f"--refine-steps {text}: must be a whole number >= 0, or auto")
    return text if text == "auto" else int(text)


def parse_sky_noise(text):
    """--sky-noise at draw time: "auto" or a fraction 0 to 4 (model.check_sky_noise), else InputError."""
    if text == "auto":
        return text
    try:
        fraction = float(text)
    except ValueError:
        raise InputError(f"--sky-noise {text}: must be a fraction of the sky's noise, 0 to 4 (0: off), or auto") from None
    check_sky_noise(fraction)
    return fraction


def draw_with_sky_noise(model, fraction, galaxies=None):
    """Draw with `fraction` of the sky's noise from now on (None: the checkpoint's own); returns it as the
    refine records key it, None for the checkpoint's own. A model trained without sky noise stores no sky: it
    gets the training split's, measured as train.py measures it (needs galaxies)."""
    if fraction is None or fraction == model.sky_noise:
        return None
    measured = needs_training_sky(model, fraction)
    model.set_sky_noise(fraction, band_sky_noise(galaxies.train_x) if measured else None)
    return fraction


def needs_training_sky(model, fraction):
    """Whether drawing at `fraction` needs the training split (draw_with_sky_noise)."""
    return bool(fraction) and not hasattr(model, "sky_sigma")


# ---------------------------------------------------------------- measuring on the validation split

def choose_refine_steps(model, galaxies, sampler=DEFAULT_SAMPLER, components=DEFAULT_COMPONENTS, sampler_epochs=None,
                        device="cpu", progress=True, num_samples=REFINE_CHOICE_SAMPLES, seed=0,
                        confidence=CLASS_CONFIDENCE, fitted=None):
    """0 or 1 decode-encode steps, whichever gives the sampler's class samples the lower FID against the
    validation split (n_k = N / classes a class, as evaluate's); the test split plays no part. Returns
    (steps, {steps: FID}). A noisy decoder draws its noise from `seed` here, so that one checkpoint always
    makes one choice. `fitted`: the sampler already fitted to this model's training latents with these
    settings and `seed` (the sky choice fits it once for its three fractions), else fitted here."""
    try:
        counts = fid_counts(galaxies, "val", num_samples)
    except InputError:
        raise InputError("the validation split has fewer than 2 galaxies of a class") from None
    inception = fid.load_inception(device=device)
    real = {k: real_activations(galaxies, "val", k, n, seed, inception, device, progress) for k, n in counts.items()}
    if fitted is None:
        fitted = fit_training_sampler(sampler, model, galaxies, seed, components, sampler_epochs, confidence=confidence)
    fids = {}
    for steps in (0, 1):
        with forked_rng(next(model.parameters()).device, seed):
            samples = {k: decode_latents(model, refine_latents(model, fitted.sample(n, seed, label=k), steps))
                       for k, n in counts.items()}
        acts = {k: fid.get_activations(x, inception, None, device, progress) for k, x in samples.items()}
        fids[steps] = fid_table(acts, real)["overall"]
    return min(fids, key=fids.get), fids


def sky_candidates(own):
    """The fractions --sky-noise auto chooses among: none, half and all of the checkpoint's own."""
    return sorted({0.0, own / 2, float(own)})


# ---------------------------------------------------------------- the record beside the checkpoint

def _choice_key(checkpoint_path, sampler, components, sampler_epochs, confidence, sky_noise):
    """What a choice depends on; sky_noise None is the checkpoint's own fraction, "auto" the sky choice. The
    class model keeps the draws at confidence > 0, so a choice measured with another one is measured again."""
    return {"checkpoint_sha256": sha256_of(checkpoint_path), "sampler": sampler, "components": components,
            "sampler_epochs": sampler_epochs, "mixture": MIXTURE_FIT if sampler == "gmm" else None,
            "class_confidence": confidence, "class_model": class_model_at(confidence), "sky_noise": sky_noise}


RENAMED_KEYS = {"prior": "sampler", "prior_epochs": "sampler_epochs"}  # records written before the rename


def _recorded_choices(path):
    """The records in a refine_steps.json (none when it is missing), their keys in today's names. A damaged
    one is moved aside with a line, so that the next record never overwrites the choices it held; where it
    cannot be moved, InputError."""
    if not path.exists():
        return []
    try:
        records = [r for r in json.loads(path.read_text())["choices"] if isinstance(r, dict) and "chosen" in r]
    except (OSError, ValueError, KeyError, TypeError) as e:
        problem = f"not a record of draw choices ({type(e).__name__})"
        try:
            set_aside(path, problem, "; its choices are measured again when asked")
        except OSError as moving:
            raise InputError(f"{path}: {problem}, and it cannot be moved aside ({moving.strerror}): "
                             "move it away") from None
        return []
    for record in records:
        key = record.get("key")
        if isinstance(key, dict):  # records from before class_confidence kept every draw, before --sky-noise
            key = {"class_confidence": 0.0, "sky_noise": None} | {RENAMED_KEYS.get(k, k): v for k, v in key.items()}
            # and from before the class model and the mixture's fit were named: a logistic regression kept the
            # draws of a mixture fitted to the means
            record["key"] = {"class_model": "logistic regression" if key["class_confidence"] else None,
                             "mixture": "means" if key.get("sampler") == "gmm" else None} | key
    return records


def _find_record(checkpoint_path, key):
    """The newest record with this key (one measured again after a damaged one wins), else None."""
    records = _recorded_choices(Path(checkpoint_path).parent / REFINE_RECORD)
    return next((r for r in reversed(records) if r.get("key") == key), None)


def _keep_record(checkpoint_path, record):
    """Add a record to REFINE_RECORD; where it was kept, or why not (a read-only folder draws unrecorded)."""
    path = Path(checkpoint_path).parent / REFINE_RECORD
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps({"choices": _recorded_choices(path) + [record]}, indent=1))
    except OSError as e:
        return f"not kept: {path}: {e.strerror}"
    except InputError as e:
        return f"not kept: {e}"
    return f"kept in {path}"


def refine_choice(refine_steps, checkpoint_path, sampler=DEFAULT_SAMPLER, components=DEFAULT_COMPONENTS,
                  sampler_epochs=None, confidence=CLASS_CONFIDENCE, sky_noise=None):
    """(steps, the record it came from or None): refine_steps as given, or for "auto" the choice recorded
    beside the checkpoint for this sampler and sky fraction (record_refine_choice), else 0. Never measures:
    a draw costs no more than drawing, and draws the same with or without the FID weights."""
    if refine_steps != "auto":
        return refine_steps, None
    if sampler == "normal":  # the choice is measured on class samples, which N(0, I) cannot draw
        return 0, None
    record = _find_record(checkpoint_path, _choice_key(checkpoint_path, sampler, components, sampler_epochs,
                                                       confidence, sky_noise))
    return (0, None) if record is None else (record["chosen"], record)


def record_refine_choice(model, galaxies, checkpoint_path, sampler=DEFAULT_SAMPLER, components=DEFAULT_COMPONENTS,
                         sampler_epochs=None, device="cpu", progress=True, confidence=CLASS_CONFIDENCE, sky_noise=None,
                         fitted=None):
    """Choose the steps on the validation split (choose_refine_steps, given `fitted`) unless already recorded
    for this checkpoint, sampler and sky fraction (the model must draw at it), and keep the choice in
    REFINE_RECORD beside the checkpoint; (steps, record)."""
    steps, record = refine_choice("auto", checkpoint_path, sampler, components, sampler_epochs, confidence, sky_noise)
    if record is not None:
        return steps, record
    print(f"--refine-steps auto: measuring 0 and 1 decode-encode steps of the {sampler} class samples "
          f"({model.sky_noise:g} x the sky noise) on the validation split", flush=True)
    chosen, fids = choose_refine_steps(model, galaxies, sampler, components, sampler_epochs, device, progress,
                                       confidence=confidence, fitted=fitted)
    record = {"key": _choice_key(checkpoint_path, sampler, components, sampler_epochs, confidence, sky_noise),
              "split": "val", "num_samples": REFINE_CHOICE_SAMPLES, "seed": 0,
              "validation_fid": {str(k): v for k, v in fids.items()}, "chosen": chosen}
    kept = _keep_record(checkpoint_path, record)
    print(f"--refine-steps auto: {chosen} (validation FID of {sampler} class samples: "
          f"{fids[0]:.1f} as drawn, {fids[1]:.1f} after one step; {kept})")
    return chosen, record


def sky_choice(sky_noise, checkpoint_path, sampler=DEFAULT_SAMPLER, components=DEFAULT_COMPONENTS, sampler_epochs=None,
               confidence=CLASS_CONFIDENCE):
    """(fraction, the record it came from or None): --sky-noise as given, or for "auto" the fraction recorded
    beside the checkpoint (record_sky_choice), else None: the checkpoint's own. Never measures. N(0, I)
    draws no classes: it takes the default class sampler's choice."""
    if sky_noise != "auto":
        return sky_noise, None
    sampler = DEFAULT_SAMPLER if sampler == "normal" else sampler
    record = _find_record(checkpoint_path, _choice_key(checkpoint_path, sampler, components, sampler_epochs,
                                                       confidence, "auto"))
    try:
        check_sky_noise(record["chosen"])
    except (TypeError, InputError):  # none, or damaged: no record
        return None, None
    return record["chosen"], record


def record_sky_choice(model, galaxies, checkpoint_path, sampler=DEFAULT_SAMPLER, components=DEFAULT_COMPONENTS,
                      sampler_epochs=None, device="cpu", progress=True, confidence=CLASS_CONFIDENCE):
    """Choose the sky fraction on the validation split unless already recorded: for each of sky_candidates,
    the refine choice at that fraction (record_refine_choice: measured where not yet recorded), and the
    fraction whose chosen steps give the lowest FID. Kept in REFINE_RECORD; (fraction, record). The model
    draws at its own fraction again afterwards."""
    sampler = DEFAULT_SAMPLER if sampler == "normal" else sampler
    fraction, record = sky_choice("auto", checkpoint_path, sampler, components, sampler_epochs, confidence)
    own, candidates = model.sky_noise, sky_candidates(model.sky_noise)
    if record is not None or len(candidates) == 1:  # a model trained without noise has nothing to choose
        return fraction, record
    # The sampler's fit depends on the encoder alone, not on the noise the decoder draws: fitted once.
    fitted, fids = fit_training_sampler(sampler, model, galaxies, 0, components, sampler_epochs, confidence=confidence), {}
    try:
        for f in candidates:
            model.set_sky_noise(f)
            steps, refined = record_refine_choice(model, galaxies, checkpoint_path, sampler, components, sampler_epochs,
                                                  device, progress, confidence, None if f == own else f, fitted)
            fids[f] = refined["validation_fid"][str(steps)]
    finally:
        model.set_sky_noise(own)
    chosen = min(fids, key=fids.get)
    record = {"key": _choice_key(checkpoint_path, sampler, components, sampler_epochs, confidence, "auto"),
              "split": "val", "num_samples": REFINE_CHOICE_SAMPLES, "seed": 0,
              "validation_fid": {f"{f:g}": v for f, v in fids.items()}, "chosen": chosen}
    kept = _keep_record(checkpoint_path, record)
    print(f"--sky-noise auto: {chosen:g} (validation FID of {sampler} class samples at its refine steps: "
          f"{', '.join(f'{v:.1f} at {f:g}' for f, v in fids.items())}; {kept})")
    return chosen, record
