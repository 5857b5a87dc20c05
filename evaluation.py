"""What --evaluate measures.

FIDs against a held-out split, each at equal N on both sides and per class (N / classes each) as well as
pooled: the floor (real training galaxies), reconstructions of held-out galaxies (what the decoder can
express) and each sampler's class-targeted samples. Beside them: SSIM of the reconstructions, the
accuracy of the class judge (judge.py, chosen on validation accuracy alone) on real held-out galaxies, on
their reconstructions and on each sampler's samples, and a data-copying test per sampler.
"""
import hashlib
from types import SimpleNamespace

import numpy as np
import torch
from scipy.stats import mannwhitneyu

import fid
from classes import CLASS_NAMES
from cli import InputError
from devices import forked_rng
from files import atomic_output, set_aside
from judge import classify, load_or_train_classifier
from losses import ssim
from model import decode_latents, encode_means, refine_latents
from samplers import CLASS_CONFIDENCE, DEFAULT_SAMPLER, SAMPLERS, fit_training_sampler


# ---------------------------------------------------------------- FIDs per class, at equal N

def class_subset(labels, k, n, seed):
    """Positions of a seeded random n of the images of class k."""
    positions = torch.nonzero(labels == k).flatten()
    return positions[torch.randperm(len(positions), generator=torch.Generator().manual_seed(seed + k))[:n]]


def real_activations(galaxies, split, k, n, seed, inception, device, progress):
    """Inception features of n real galaxies of class k from a split (a seeded subset), cached in
    the data cache beside real_statistics': features, not statistics, because the overall FID pools
    the classes' features."""
    path = fid.statistics_cache_path(galaxies, f"{split}-class{k}", n, seed)
    path = path.with_name(path.name.replace("fid-", "acts-").replace(".npz", ".npy"))
    if path.exists():
        try:
            acts = np.load(path, allow_pickle=False)
            if acts.shape[0] == n:  # its name says n: another count is a damaged file too
                return acts
            problem = f"{acts.shape[0]} features, not {n}"
        except (OSError, ValueError) as e:
            problem = f"unreadable features ({type(e).__name__})"
        set_aside(path, problem, "; measuring them again")
    x, y = galaxies.split(split)
    acts = fid.get_activations(x[class_subset(y, k, n, seed)], inception, None, device, progress)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, acts)
    return acts


def fid_counts(galaxies, split, num_samples):
    """n_k per class for FIDs against `split` at N = num_samples: N / classes, capped by the split's and the
    training split's galaxies of class k (the floor draws that many training galaxies); InputError below 2."""
    held_y = galaxies.split(split)[1]
    counts = {k: min(num_samples // len(galaxies.classes), int((held_y == k).sum()), int((galaxies.train_y == k).sum()))
              for k in galaxies.classes}
    if min(counts.values()) < 2:
        raise InputError(f"--fid-samples {num_samples}: gives {min(counts.values())} image(s) of a class per FID, "
                         f"need at least 2 (use at least {2 * len(counts)})")
    return counts


def fid_table(per_class_acts, real):
    """FID of generated features against real ones, per class and of all classes pooled: {"overall": x,
    k: x, ...}."""
    table = {k: None if acts is None else fid.feature_distance(acts, real[k])
             for k, acts in per_class_acts.items()}
    if all(a is not None for a in per_class_acts.values()):
        table["overall"] = fid.feature_distance(np.concatenate(list(per_class_acts.values())),
                                            np.concatenate(list(real.values())))
    return table


# ---------------------------------------------------------------- one FID against validation galaxies, per model

def fid_scorer(galaxies, draw, split="val", num_samples=549, seed=0, device="cpu", inception=None):
    """(score, n): score(model) is the FID of draw(model, real), the images a model makes for the n real
    galaxies of `split` it is compared with, against those n galaxies: n = min(num_samples, the split's
    size), a seeded subset as fid.real_statistics takes it, whose statistics are cached. Inception is loaded
    once (or passed in); without the FID weights this raises InputError. What train.py's --fid-every measures
    (draw = reconstructions) and what grid_search.py ranks by (draw = N(0, I) samples)."""
    x = galaxies.split(split)[0]
    n = min(num_samples, len(x))
    inception = inception or fid.load_inception(device=device)
    real = fid.real_statistics(galaxies, split, n, seed, device=device, progress=False, model=inception)
    subset = x[fid.subset_of(len(x), n, seed)]

    def score(model):
        acts = fid.get_activations(draw(model, subset), inception, device=device, progress=False)
        return fid.frechet_distance(*fid.calculate_statistics(acts), *real)
    return score, n


def reconstructions(model, images, seed=0):
    """The model's reconstructions (posterior mean) of `images`. A noisy decoder draws its noise from `seed`
    and leaves the RNG as it was, so the same model gives the same images and a training run that measures
    them resumes exactly."""
    with forked_rng(next(model.parameters()).device, seed):
        return decode_latents(model, encode_means(model, images))


# ---------------------------------------------------------------- the other measures

@torch.no_grad()
def reconstruction_ssim(model, images, labels, classes, batch_size=256):
    """Test SSIM of reconstructions from the posterior mean: overall and per class."""
    per_image = torch.cat([ssim(decode_latents(model, encode_means(model, b)), b, per_image=True)
                           for b in images.split(batch_size)])
    return {"mean": per_image.mean().item(), "n": len(images),
            "per_class": {str(k): per_image[labels == k].mean().item() for k in classes}}


def nearest_distances(points, reference, batch_size=1024):
    """Each point's Euclidean distance to its nearest point in `reference` (both N x d). Computed directly,
    not through the matrix product cdist uses for large sets, which rounds a copy's 0 to ~1e-3."""
    return torch.cat([torch.cdist(b, reference, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
                      for b in points.split(batch_size)]).numpy()


def copying_z(generated, held_out):
    """Meehan, Chaudhuri & Dasgupta 2020 ("A non-parametric test to detect data-copying in generative
    models"), their Z_U in one cell: the Mann-Whitney U of the generated points' distances to the training
    set against held-out points' distances, standardised. Near 0: the generated galaxies lie as far from
    the training galaxies as new galaxies do; far below 0 (the paper's data-copying): nearer, copies;
    above 0: farther. Far below 0 can also mean samples crowded into the data's dense middle, where every
    point has near neighbours: read it beside the ratio of the median distances."""
    m, n = len(generated), len(held_out)
    u = mannwhitneyu(np.asarray(generated), np.asarray(held_out)).statistic
    return float((u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12))


def reconstruction_judge(model, galaxies, epochs=30, seed=0, width=16, device="cpu", progress=True):
    """The judge of what the model draws: a GalaxyClassifier of `width` trained on the model's reconstructions
    of the training split, its epoch chosen by its accuracy on reconstructions of the validation split, and
    cached by the model's weights. The judge of real galaxies asks "does this look like a real galaxy of
    class K?", and takes every blurred galaxy for a spiral; this one asks "do the classes stay apart in what
    this model draws?", so a blurry model that keeps round, spiral and edge-on apart scores well here."""
    splits = SimpleNamespace(train_x=reconstructions(model, galaxies.train_x, seed), train_y=galaxies.train_y,
                             val_x=reconstructions(model, galaxies.val_x, seed), val_y=galaxies.val_y,
                             classes=galaxies.classes)
    weights = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values()))
    return load_or_train_classifier(splits, epochs, seed, device, progress=progress, widths=(width,),
                                    name=f"recon-judge-{galaxies.fingerprint}-{weights.hexdigest()[:16]}")


def judge_accuracy(judge, images, labels, classes):
    """Accuracy of the judge on images of known class: one key per class id and `overall`, the mean of the
    classes (they are balanced)."""
    predicted = classify(judge, images, classes)
    result = {str(k): (predicted[labels == k] == k).float().mean().item() for k in classes}
    return {"overall": float(np.mean(list(result.values())))} | result


def evaluate(model, galaxies, num_samples=256, seed=0, sampler=DEFAULT_SAMPLER, samplers=SAMPLERS, components=4,
             judge_epochs=30, sampler_epochs=None, device="cpu", progress=True, refine_steps=0, split="test",
             confidence=CLASS_CONFIDENCE):
    """All metrics on a held-out split (the test split; "val" to choose settings without touching it) as
    one JSON-ready dict. FIDs against that split, each at equal N on both sides: n_k = min(N / classes,
    held-out and training galaxies of class k) per class, and the classes pooled (n = sum of n_k) overall.
    The floor is real training galaxies, then reconstructions of the held-out galaxies, then each sampler's
    class-targeted samples (N(0, I) has no classes: overall only), every sampler's draws refined by
    refine_steps decode-encode round trips, and kept at `confidence` (samplers.Sampler.keep_confident).
    Copying, per sampler: the latents of the FID's samples against the held-out galaxies' latents (the same
    n_k of each class), each point's distance to the nearest training galaxy's latent (copying_z).
    A noisy decoder draws its noise from `seed`, so one checkpoint always gives one evaluation."""
    with forked_rng(next(model.parameters()).device, seed):
        return _evaluate(model, galaxies, num_samples, seed, sampler, samplers, components, judge_epochs,
                         sampler_epochs, device, progress, refine_steps, split, confidence)


def _evaluate(model, galaxies, num_samples, seed, sampler, samplers, components, judge_epochs, sampler_epochs, device,
              progress, refine_steps, split, confidence):
    classes, (held_x, held_y) = list(galaxies.classes), galaxies.split(split)
    inception = fid.load_inception(device=device)

    def acts_of(images):
        return fid.get_activations(images, inception, None, device, progress)

    counts = fid_counts(galaxies, split, num_samples)
    real = {k: real_activations(galaxies, split, k, n, seed, inception, device, progress) for k, n in counts.items()}
    floor = {k: real_activations(galaxies, "train", k, n, seed, inception, device, progress) for k, n in counts.items()}
    held_mu = encode_means(model, held_x)
    held_recon = decode_latents(model, held_mu)
    ssim_result = reconstruction_ssim(model, held_x, held_y, classes)  # drawn before the judges, which may train
    subsets = {k: class_subset(held_y, k, n, seed) for k, n in counts.items()}  # the galaxies the FID sees
    recon = {k: acts_of(held_recon[subset]) for k, subset in subsets.items()}
    fids = {"floor": fid_table(floor, real), "reconstructions": fid_table(recon, real), "samplers": {}}

    train_mu, fit_seconds, kept, class_samples = encode_means(model, galaxies.train_x), {}, {}, {}
    held_out = nearest_distances(torch.cat([held_mu[subset] for subset in subsets.values()]), train_mu)
    copying = {"held_out_median": float(np.median(held_out)), "samplers": {}}

    def copying_of(latents):
        distances = nearest_distances(latents, train_mu)
        return {"z": copying_z(distances, held_out), "median_ratio": float(np.median(distances) / np.median(held_out))}

    for kind in samplers:
        fitted = fit_training_sampler(kind, model, galaxies, seed, components, sampler_epochs, train_mu, confidence)
        fit_seconds[kind] = round(fitted.fit_seconds, 2)
        if kind == "normal":  # no classes: as many N(0, I) galaxies as all classes' real ones together
            latents = refine_latents(model, fitted.sample(sum(counts.values()), seed), refine_steps)
            acts = acts_of(decode_latents(model, latents))
            fids["samplers"][kind] = {"overall": fid.feature_distance(acts, np.concatenate(list(real.values())))}
            copying["samplers"][kind] = copying_of(latents)
            continue
        # num_samples galaxies per class for the judge; the first n_k of them for the FID.
        latents = {k: refine_latents(model, fitted.sample(num_samples, seed, label=k), refine_steps) for k in classes}
        samples = class_samples[kind] = {k: decode_latents(model, z) for k, z in latents.items()}
        kept[kind] = {str(k): share for k, share in fitted.kept.items()}
        fids["samplers"][kind] = fid_table({k: acts_of(samples[k][:n]) for k, n in counts.items()}, real)
        copying["samplers"][kind] = copying_of(torch.cat([latents[k][:n] for k, n in counts.items()]))

    judge = load_or_train_classifier(galaxies, judge_epochs, seed, device, progress=progress)
    drawn = {kind: torch.cat(list(samples.values())) for kind, samples in class_samples.items()}
    drawn_labels = torch.tensor(classes).repeat_interleave(num_samples)
    accuracy = {"judge_val": judge.selection["chosen"]["val_accuracy"],
                f"real_{split}": judge_accuracy(judge, held_x, held_y, classes),
                "reconstructions": judge_accuracy(judge, held_recon, held_y, classes),
                "samplers": {kind: None for kind in samplers}}
    for kind, images in drawn.items():
        accuracy["samplers"][kind] = judge_accuracy(judge, images, drawn_labels, classes)
    accuracy["samples"] = accuracy["samplers"].get(sampler)
    recon_judge = reconstruction_judge(model, galaxies, judge_epochs, seed, judge.width, device, progress)
    accuracy["reconstruction_judge"] = {
        "val": recon_judge.selection["chosen"]["val_accuracy"],
        "reconstructions": judge_accuracy(recon_judge, held_recon, held_y, classes),
        "samplers": {kind: None if kind not in drawn else judge_accuracy(recon_judge, drawn[kind], drawn_labels, classes)
                     for kind in samplers}}
    return {"split": split, "num_samples": num_samples, "seed": seed, "sampler": sampler,
            "sky_noise": model.sky_noise, "ssim": ssim_result,
            "fid": arrange_fids(fids, counts), "accuracy": accuracy, "copying": copying,
            "samplers": {"fit_seconds": fit_seconds, "sampler_epochs": sampler_epochs, "components": components,
                         "refine_steps": refine_steps, "class_confidence": confidence, "kept": kept},
            "judge": judge.selection, "reconstruction_judge": recon_judge.selection}


def arrange_fids(fids, counts):
    """{"n", "floor", "reconstructions", "samplers": {...}} overall, and the same under per_class."""
    def at(key):
        return {"floor": fids["floor"].get(key), "reconstructions": fids["reconstructions"].get(key),
                "samplers": {kind: table.get(key) for kind, table in fids["samplers"].items()}}
    return {"n": sum(counts.values())} | at("overall") | {
        "per_class": {str(k): {"n": n} | at(k) for k, n in counts.items()}}


def format_table(result, classes):
    """The evaluation as a plain-text table: one column overall, one per class."""
    def cell(value):
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    fids, acc, chosen, split = result["fid"], result["accuracy"], result["judge"]["chosen"], result.get("split", "test")
    per_class = lambda get: {str(k): get(fids["per_class"][str(k)]) for k in classes}
    rows = [(f"{split} SSIM (posterior mean)", result["ssim"]["mean"], result["ssim"]["per_class"]),
            ("images per FID side (N)", fids["n"], per_class(lambda e: e["n"])),
            ("FID floor: real training galaxies", fids["floor"], per_class(lambda e: e["floor"])),
            (f"FID reconstructions of {split} galaxies", fids["reconstructions"], per_class(lambda e: e["reconstructions"]))]
    for kind in fids["samplers"]:
        rows.append((f"FID {kind} samples ({result['samplers']['fit_seconds'][kind]:.3g} s fit)",
                     fids["samplers"][kind], per_class(lambda e: e["samplers"][kind])))
    rows += [(f"judge accuracy, real {split} galaxies", acc[f"real_{split}"]["overall"], acc[f"real_{split}"]),
             ("judge accuracy, reconstructions", acc["reconstructions"]["overall"], acc["reconstructions"])]
    for kind, table in acc["samplers"].items():
        if table is not None:
            rows.append((f"judge accuracy, {kind} class samples", table["overall"], table))
    for kind, shares in result["samplers"].get("kept", {}).items():
        if shares:
            rows.append((f"{kind} draws kept at p >= {result['samplers']['class_confidence']:g}", None, shares))
    recon_judge = acc.get("reconstruction_judge")
    if recon_judge is not None:
        rows.append(("recon judge accuracy, reconstructions", recon_judge["reconstructions"]["overall"],
                     recon_judge["reconstructions"]))
        rows += [(f"recon judge accuracy, {kind} samples", table["overall"], table)
                 for kind, table in recon_judge["samplers"].items() if table is not None]
    lines = [f"{'':40}{'overall':>10}" + "".join(f"{f'{k} {CLASS_NAMES[k]}'[:20]:>22}" for k in classes)]
    for name, overall, by_class in rows:
        lines.append(f"{name[:40]:40}{cell(overall):>10}" + "".join(f"{cell(by_class.get(str(k))):>22}" for k in classes))
    lines.append(f"judge: width {chosen['width']}, epoch {chosen['epoch']}, chosen by validation accuracy "
                 f"{chosen['val_accuracy']:.4g} (class samples drawn {result['num_samples']} per class, each "
                 f"sampler's latents refined by {result['samplers']['refine_steps']} decode-encode step(s))")
    if result.get("sky_noise") or result.get("sky_choice"):  # sky_choice: generate.py --sky-noise auto's record
        how = " (--sky-noise auto: chosen on the validation split)" if result.get("sky_choice") else ""
        lines.append(f"every decoded image drawn with {result['sky_noise']:g} x the training split's sky noise per "
                     f"band{how}")
    if "reconstruction_judge" in result:
        recon = result["reconstruction_judge"]["chosen"]
        lines.append(f"recon judge: trained on this model's reconstructions of the training split, epoch {recon['epoch']} "
                     f"chosen by its accuracy on reconstructions of the validation split, {recon['val_accuracy']:.4g}")
    for kind, copy in result["copying"]["samplers"].items():
        lines.append(f"copying, {kind}: Z_U {copy['z']:+.1f}, median distance to the nearest training latent "
                     f"{copy['median_ratio']:.2f} x the {split} galaxies' (Z_U far below 0: nearer than new galaxies)")
    return "\n".join(lines)
