"""What --evaluate measures.

FIDs against a held-out split, each at equal N on both sides and per class (N / classes each) as well as
pooled: the floor (real training galaxies), reconstructions of held-out galaxies (what the decoder can
express) and each sampler's class-targeted samples; each with its KID on the same features (unbiased at
small N, where FID is not). Beside them: SSIM of the reconstructions, the accuracy of the class judge
(judge.py, chosen on validation accuracy alone) on real held-out galaxies, on their reconstructions and on
each sampler's samples, and a data-copying test per sampler.
"""
import hashlib
from types import SimpleNamespace

import numpy as np
import torch
from scipy.stats import mannwhitneyu

import fid
import morphometry
from classes import CLASS_NAMES
from cli import InputError
from devices import forked_rng
from files import atomic_output, set_aside
from judge import classify, load_or_train_classifier
from losses import ssim
from model import decode_latents, encode_means, encode_posteriors, refine_latents
from samplers import (CLASS_CONFIDENCE, DEFAULT_COMPONENTS, DEFAULT_SAMPLER, SAMPLERS, class_model_at,
                      fit_training_sampler)


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


def fid_table(per_class_acts, real, distance=fid.feature_distance):
    """FID (or another distance of two feature sets) of generated features against real ones, per class and
    of all classes pooled: {"overall": x, k: x, ...}."""
    table = {k: None if acts is None else distance(acts, real[k])
             for k, acts in per_class_acts.items()}
    if all(a is not None for a in per_class_acts.values()):
        table["overall"] = distance(np.concatenate(list(per_class_acts.values())), np.concatenate(list(real.values())))
    return table


def kid_of(acts, real_acts, seed=0):
    """KID as evaluation.json holds it: {"mean", "sd"} over fid.kernel_inception_distance's subsets (100 of
    min(1000, N) a side, torch-fidelity's defaults), drawn from `seed`."""
    mean, sd = fid.kernel_inception_distance(acts, real_acts, seed=seed)
    return {"mean": mean, "sd": sd}


def kid_table(per_class_acts, real, seed=0):
    """fid_table's table with KIDs ({"mean", "sd"}) in place of FIDs: the same features, no second
    Inception pass."""
    return fid_table(per_class_acts, real, lambda acts, real_acts: kid_of(acts, real_acts, seed))


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


# ---------------------------------------------------------------- morphology, as astronomers measure it

def training_pool(galaxies, k, n, seed):
    """The real training galaxies of class k whose morphology the floor is drawn from: a seeded 3n of them
    (all, if fewer), so that FLOOR_DRAWS draws of n differ while the pool is measured once and cached."""
    return galaxies.train_x[class_subset(galaxies.train_y, k, 3 * n, seed)]


def morphology_report(galaxies, held, recon, samples, counts, seed=0, progress=True):
    """statmorph's statistics of each set against the real held-out galaxies, per class (morphometry):
    held, recon: {k: the n_k held-out galaxies the FID sees, and their reconstructions}; samples: {sampler:
    {k: its n_k class samples}}. Real galaxies' tables are cached by their pixels; the generated ones are
    measured in one pass over the cores. Returns the JSON-ready report, shaped like the FIDs: n and failures
    per set, reconstructions.<k> and samplers.<name>.<k> each {<statistic>: {w, floor, ratio}, mean_ratio},
    and every galaxy's values (for morphology.png)."""
    real = {k: morphometry.measure_cached(x, progress, f"statmorph, real class {k}") for k, x in held.items()}
    pools = {k: morphometry.measure_cached(training_pool(galaxies, k, n, seed), progress, f"statmorph, training class {k}")
             for k, n in counts.items()}
    sets = [("reconstructions", recon)] + [(f"samplers.{kind}", by_class) for kind, by_class in samples.items()]
    pieces = [(name, k, images) for name, by_class in sets for k, images in by_class.items()]
    table = morphometry.measure_all(torch.cat([images for _, _, images in pieces]), progress, "statmorph, drawn")
    tables, start = {}, 0
    for name, k, images in pieces:
        tables.setdefault(name, {})[k] = morphometry.take(table, slice(start, start + len(images)))
        start += len(images)

    def per_class(by_class):
        return {str(k): morphometry.compare(t, real[k], pools[k], counts[k], seed=seed) for k, t in by_class.items()}

    def counted(by_class, how):
        return {str(k): how(t) for k, t in by_class.items()}

    def values(by_class):
        return {str(k): {s: [round(v, 5) if np.isfinite(v) else None for v in t[s].tolist()] for s in morphometry.NAMES}
                for k, t in by_class.items()}

    everything = {"real": real, "floor": pools} | tables
    return {"n": {name: counted(t, lambda t: len(t["failure"])) for name, t in everything.items()},
            "failures": {name: counted(t, morphometry.failures) for name, t in everything.items()},
            "floor_draws": morphometry.FLOOR_DRAWS, "settings": morphometry.SETTINGS,
            "reconstructions": per_class(tables["reconstructions"]),
            "samplers": {kind: per_class(tables[f"samplers.{kind}"]) for kind in samples},
            "values": {name: values(t) for name, t in everything.items() if name != "floor"}}


def evaluate(model, galaxies, num_samples=256, seed=0, sampler=DEFAULT_SAMPLER, samplers=SAMPLERS,
             components=DEFAULT_COMPONENTS, judge_epochs=30, sampler_epochs=None, device="cpu", progress=True,
             refine_steps=0, split="test", confidence=CLASS_CONFIDENCE, morphology=True):
    """All metrics on a held-out split (the test split; "val" to choose settings without touching it) as
    one JSON-ready dict. FIDs against that split, each at equal N on both sides: n_k = min(N / classes,
    held-out and training galaxies of class k) per class, and the classes pooled (n = sum of n_k) overall.
    The floor is real training galaxies, then reconstructions of the held-out galaxies, then each sampler's
    class-targeted samples (N(0, I) has no classes: overall only), every sampler's draws refined by
    refine_steps decode-encode round trips, and kept at `confidence` (samplers.Sampler.keep_confident).
    Copying, per sampler: the latents of the FID's samples against the held-out galaxies' latents (the same
    n_k of each class), each point's distance to the nearest training galaxy's latent (copying_z).
    Morphology (with `morphology`): the same galaxies' statmorph statistics, per class (morphology_report).
    A noisy decoder draws its noise from `seed`, so one checkpoint always gives one evaluation."""
    with forked_rng(next(model.parameters()).device, seed):
        return _evaluate(model, galaxies, num_samples, seed, sampler, samplers, components, judge_epochs,
                         sampler_epochs, device, progress, refine_steps, split, confidence, morphology)


def _evaluate(model, galaxies, num_samples, seed, sampler, samplers, components, judge_epochs, sampler_epochs, device,
              progress, refine_steps, split, confidence, morphology):
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
    kids = {"floor": kid_table(floor, real, seed), "reconstructions": kid_table(recon, real, seed), "samplers": {}}

    train_posteriors, fit_seconds, kept, class_samples = encode_posteriors(model, galaxies.train_x), {}, {}, {}
    train_mu = train_posteriors[0]
    collapse = {}  # per class sampler and class: samplers.Sampler.collapse of its images' latents
    held_out = nearest_distances(torch.cat([held_mu[subset] for subset in subsets.values()]), train_mu)
    copying = {"held_out_median": float(np.median(held_out)), "samplers": {}}

    def copying_of(latents):
        distances = nearest_distances(latents, train_mu)
        return {"z": copying_z(distances, held_out), "median_ratio": float(np.median(distances) / np.median(held_out))}

    for kind in samplers:
        fitted = fit_training_sampler(kind, model, galaxies, seed, components, sampler_epochs, train_posteriors,
                                      confidence)
        fit_seconds[kind] = round(fitted.fit_seconds, 2)
        if kind == "normal":  # no classes: as many N(0, I) galaxies as all classes' real ones together
            latents = refine_latents(model, fitted.sample(sum(counts.values()), seed), refine_steps)
            acts, pooled = acts_of(decode_latents(model, latents)), np.concatenate(list(real.values()))
            fids["samplers"][kind] = {"overall": fid.feature_distance(acts, pooled)}
            kids["samplers"][kind] = {"overall": kid_of(acts, pooled, seed)}
            copying["samplers"][kind] = copying_of(latents)
            continue
        # num_samples galaxies per class for the judge; the first n_k of them for the FID.
        latents = {k: refine_latents(model, fitted.sample(num_samples, seed, label=k), refine_steps) for k in classes}
        samples = class_samples[kind] = {k: decode_latents(model, z) for k, z in latents.items()}
        kept[kind] = {str(k): share for k, share in fitted.kept.items()}
        collapse[kind] = {str(k): fitted.collapse(k, encode_means(model, samples[k]), seed) for k in classes}
        sample_acts = {k: acts_of(samples[k][:n]) for k, n in counts.items()}
        fids["samplers"][kind], kids["samplers"][kind] = fid_table(sample_acts, real), kid_table(sample_acts, real, seed)
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
    shapes = None
    if morphology:
        shapes = morphology_report(galaxies, {k: held_x[s] for k, s in subsets.items()},
                                   {k: held_recon[s] for k, s in subsets.items()},
                                   {kind: {k: images[k][:n] for k, n in counts.items()} for kind, images in class_samples.items()},
                                   counts, seed, progress)
    return {"split": split, "num_samples": num_samples, "seed": seed, "sampler": sampler,
            "sky_noise": model.sky_noise, "ssim": ssim_result, "morphology": shapes,
            "fid": arrange_fids(fids, counts), "kid": arrange_fids(kids, counts), "accuracy": accuracy, "copying": copying,
            "samplers": {"fit_seconds": fit_seconds, "sampler_epochs": sampler_epochs, "components": components,
                         "refine_steps": refine_steps, "class_confidence": confidence,
                         "class_model": class_model_at(confidence), "kept": kept,
                         "collapse": collapse},
            "judge": judge.selection, "reconstruction_judge": recon_judge.selection}


def arrange_fids(fids, counts):
    """{"n", "floor", "reconstructions", "samplers": {...}} overall, and the same under per_class (of FIDs or
    of KIDs)."""
    def at(key):
        return {"floor": fids["floor"].get(key), "reconstructions": fids["reconstructions"].get(key),
                "samplers": {kind: table.get(key) for kind, table in fids["samplers"].items()}}
    return {"n": sum(counts.values())} | at("overall") | {
        "per_class": {str(k): {"n": n} | at(k) for k, n in counts.items()}}


def morphology_rows(shapes):
    """The table's morphology rows: each set's mean W ratio per class (overall: the classes' mean), and failures."""
    if not shapes:
        return []
    sets = [("reconstructions", shapes["reconstructions"])] + [(f"{kind} samples", t) for kind, t in shapes["samplers"].items()]
    rows = []
    for name, by_class in sets:
        means = {k: c["mean_ratio"] for k, c in by_class.items()}
        known = [m for m in means.values() if m is not None]
        rows.append((f"morphology W / floor, {name}", float(np.mean(known)) if known else None, means))
    for name, by_class in shapes["failures"].items():
        rows.append((f"statmorph failures, {name.replace('samplers.', '')}", sum(by_class.values()),
                     {k: f"{f}/{shapes['n'][name][k]}" for k, f in by_class.items()}))
    return rows


def format_table(result, classes):
    """The evaluation as a plain-text table: one column overall, one per class."""
    def cell(value):
        if isinstance(value, dict):  # a KID
            return f"{value['mean']:.4f} ± {value['sd']:.4f}"
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    def distance_rows(name, table):  # FID's or KID's rows: floor, reconstructions, each sampler
        per_class = lambda get: {str(k): get(table["per_class"][str(k)]) for k in classes}
        rows = [(f"{name} floor: real training galaxies", table["floor"], per_class(lambda e: e["floor"])),
                (f"{name} reconstructions of {split} galaxies", table["reconstructions"],
                 per_class(lambda e: e["reconstructions"]))]
        fit = lambda kind: f" ({result['samplers']['fit_seconds'][kind]:.3g} s fit)" if name == "FID" else ""
        return rows + [(f"{name} {kind} samples{fit(kind)}", table["samplers"][kind],
                        per_class(lambda e: e["samplers"][kind])) for kind in table["samplers"]]
    fids, acc, chosen, split = result["fid"], result["accuracy"], result["judge"]["chosen"], result.get("split", "test")
    rows = [(f"{split} SSIM (posterior mean)", result["ssim"]["mean"], result["ssim"]["per_class"]),
            ("images per FID and KID side (N)", fids["n"], {str(k): fids["per_class"][str(k)]["n"] for k in classes})]
    rows += distance_rows("FID", fids) + distance_rows("KID", result["kid"])
    rows += morphology_rows(result.get("morphology"))
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
    lines = [f"{'':40}{'overall':>16}" + "".join(f"{f'{k} {CLASS_NAMES[k]}'[:20]:>22}" for k in classes)]
    for name, overall, by_class in rows:
        lines.append(f"{name[:40]:40}{cell(overall):>16}" + "".join(f"{cell(by_class.get(str(k))):>22}" for k in classes))
    lines.append("KID: unbiased MMD^2 on the FID's features, kernel (x.y / d + 1)^3, mean ± sd over 100 subsets of "
                 "min(1000, N) a side (at N <= 1000 each subset is the whole set, so sd ~ 0)")
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
    for kind, by_class in result["samplers"].get("collapse", {}).items():
        collapsed = [f"class {k}: {verdict['collapsed']}" for k, verdict in by_class.items() if verdict["collapsed"]]
        if collapsed:
            lines.append(f"COLLAPSED, {kind} sampler: " + "; ".join(collapsed))
    return "\n".join(lines)
