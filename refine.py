"""How many decode-encode round trips (model.refine_latents) a checkpoint's sampled latents take before
they are decoded: --refine-steps K, or auto, the default of generate.py and explore.py.

One round trip z <- mu(D(z)) moves a draw that fell between the galaxies to where the encoder puts a galaxy
like its image. On some models that brings the samples' FID down to the reconstructions'; on others, whose
samples were already where the galaxies are, it crowds them and the FID rises (README, "One decode-encode
step"). So auto measures both on the validation split, once per checkpoint and class sampler, and keeps the
choice in refine_steps.json beside the checkpoint, where every later call finds it.
"""
import json
from pathlib import Path

import fid
from data import InputError, atomic_output, sha256_of
from model import decode_latents, encode_means, forked_rng, refine_latents
from priors import DEFAULT_PRIOR, fit_prior

REFINE_RECORD = "refine_steps.json"  # beside the checkpoint: generate.py and explore.py draw alike
REFINE_CHOICE_SAMPLES = 549  # N of the choice's FIDs, at seed 0 whatever --seed: the whole validation split of the
# embedded set and of Galaxy10 (183 a class), capped by smaller ones (gz1_sdss_sample: 126), as measured in the README


def parse_refine_steps(text):
    """--refine-steps: "auto" or a whole number >= 0, else InputError."""
    if text != "auto" and not (text.isdigit() and text.isascii()):
        raise InputError(f"--refine-steps {text}: must be a whole number >= 0, or auto")
    return text if text == "auto" else int(text)


def choose_refine_steps(model, galaxies, prior=DEFAULT_PRIOR, components=4, prior_epochs=None, device="cpu",
                        progress=True, num_samples=REFINE_CHOICE_SAMPLES, seed=0):
    """--refine-steps auto: 0 or 1 decode-encode steps, whichever gives the prior's class samples the lower FID
    against the validation split (n_k = N / classes a class, as --evaluate's); the test split plays no part.
    Returns (steps, {steps: FID}). A noisy decoder draws its noise from `seed` here, so that one checkpoint
    always makes one choice."""
    try:
        counts = fid.fid_counts(galaxies, "val", num_samples)
    except InputError:
        raise InputError("the validation split has fewer than 2 galaxies of a class") from None
    inception = fid.load_inception(device=device)
    real = {k: fid.real_activations(galaxies, "val", k, n, seed, inception, device, progress) for k, n in counts.items()}
    fitted = fit_prior(prior, encode_means(model, galaxies.train_x), galaxies.train_y, seed, components, prior_epochs)
    fids = {}
    for steps in (0, 1):
        with forked_rng(next(model.parameters()).device, seed):
            samples = {k: decode_latents(model, refine_latents(model, fitted.sample(n, seed, label=k), steps))
                       for k, n in counts.items()}
        acts = {k: fid.get_activations(x, inception, 50, device, progress) for k, x in samples.items()}
        fids[steps] = fid.fid_table(acts, real)["overall"]
    return min(fids, key=fids.get), fids


def resolve_refine_steps(refine_steps, model, galaxies, checkpoint_path, prior=DEFAULT_PRIOR, components=4,
                         prior_epochs=None, device="cpu", progress=True):
    """(steps, the choice's record or None): refine_steps as given, or for "auto" the validation choice for
    this checkpoint and class sampler, made once and kept in REFINE_RECORD beside the checkpoint. Without
    the FID weights (or a validation split to measure on) auto draws as drawn, and says so."""
    if refine_steps != "auto":
        return refine_steps, None
    key = {"checkpoint_sha256": sha256_of(checkpoint_path), "prior": prior, "components": components,
           "prior_epochs": prior_epochs}
    path = Path(checkpoint_path).parent / REFINE_RECORD
    try:
        records = [r for r in json.loads(path.read_text())["choices"] if isinstance(r, dict) and "chosen" in r]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: choose again
        records = []
    for record in records:
        if record.get("key") == key:
            return record["chosen"], record
    print(f"--refine-steps auto: measuring 0 and 1 decode-encode steps of the {prior} class samples on the "
          "validation split (once per checkpoint; --refine-steps 0 skips)", flush=True)
    try:
        chosen, fids = choose_refine_steps(model, galaxies, prior, components, prior_epochs, device, progress)
    except InputError as e:
        print(f"--refine-steps auto: cannot measure ({e}); drawing as drawn, 0 steps")
        return 0, None
    record = {"key": key, "split": "val", "num_samples": REFINE_CHOICE_SAMPLES, "seed": 0,
              "validation_fid": {str(k): v for k, v in fids.items()}, "chosen": chosen}
    kept = f"kept in {path}"
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps({"choices": records + [record]}, indent=1))
    except OSError as e:
        kept = f"not kept: {path}: {e.strerror}"
    print(f"--refine-steps auto: {chosen} (validation FID of {prior} class samples: "
          f"{fids[0]:.1f} as drawn, {fids[1]:.1f} after one step; {kept})")
    return chosen, record
