"""Issue 43's seed study, summarised from its grids and their validation evaluations (docs/seed-findings.md):

    python docs/seed_study.py GRID [GRID ...] --evaluations EVALS --loss-weights W [W ...] [--test DIR]
        [--figure PNG] [--json FILE]

GRID: a grid_search.py --out folder (the study's: runs/seed-study, then runs/seed-study-loss-s{0,1,2} and
runs/seed-study-front-s{1,2}, the configurations trained at more seeds). Each of
its finished configurations is measured on the validation split by

    generate.py --checkpoint GRID/runs/ID/best.pt --evaluate --split val --samplers normal gmm \
        --fid-samples 126 --sky-noise 0 --refine-steps 0 --out EVALS/<GRID's name>/ID

(docs/seed_study.sh runs all of it). Prints, as markdown: each metric over the first grid's beta x latent
table; the Spearman correlations behind the seed's claims 2 and 3; the Pareto front of validation SSIM against
the N(0, I) FID, its knee, the grid's pick and the loss weights w whose w * loss + FID would pick the knee; and
the configurations trained at several seeds (SSIM against MSE, the front), per seed, as mean +- sd, and as the
difference from the seed's setting at the same seed. --figure draws the trade-off with the class sampler's
FID; --json keeps every row (runs/ is not kept). --test DIR adds the configurations that were evaluated once on the test
split at the end (the same command with --split test, into DIR/<GRID's name>/ID): their table over the seeds."""
import argparse
import csv
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import ConstantInputWarning, spearmanr
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from model import encode_means  # noqa: E402
from plots import plot_trade_off  # noqa: E402
from samplers import CLASS_CONFIDENCE  # noqa: E402

# name: (what, higher is better)
METRICS = {
    "val_ssim": ("validation SSIM of reconstructions (the grid's)", True),
    "split_ssim": ("SSIM of reconstructions, the evaluated split", True),
    "fid": ("FID, N(0, I) samples (the grid's, validation)", False),
    "recon_fid": ("FID, reconstructions", False),
    "recon_kid": ("KID x 1e3, reconstructions", False),
    "normal_kid": ("KID x 1e3, N(0, I) samples", False),
    "class_fid": ("FID, gmm class samples", False),
    "class_kid": ("KID x 1e3, gmm class samples", False),
    "kept": ("gmm draws kept at p >= 0.95, mean of classes", True),
    "real_sure": ("real val latents at p >= 0.95 (the ceiling of kept), mean of classes", True),
    "latent_accuracy": ("the class model's accuracy on real val latents", True),
    "apart_recon": ("classes apart in reconstructions (recon judge, val accuracy)", True),
    "apart_samples": ("classes apart in gmm samples (recon judge accuracy)", True),
    "real_judge_samples": ("real-galaxy judge's accuracy on gmm samples", True),
    "morph_recon": ("morphology W1/floor, reconstructions (mean of classes)", False),
    "morph_samples": ("morphology W1/floor, gmm samples (mean of classes)", False),
}


def grid_rows(grid):
    """The finished configurations of a grid, from the results.csv its workers (or --summarize) wrote."""
    path = grid / "results.csv"
    if not path.is_file():
        sys.exit(f"{path}: missing (run grid_search.py --summarize {grid})")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    kinds = {"beta": float, "latent": int, "val_loss": float, "val_ssim": float, "fid": float, "fid_n": int}
    return [{k: kinds.get(k, str)(v) for k, v in r.items() if k in kinds or k in ("id", "recon_loss", "checkpoint")}
            for r in rows]


def score(row, loss_weight):
    """grid_search.py's score: w * validation loss + FID of the N(0, I) samples."""
    return loss_weight * row["val_loss"] + row["fid"]


def row_of(record, grid, evaluations, split="val"):
    """One finished configuration: the grid's numbers and those of its evaluation on `split` (None where it
    has none yet)."""
    row = {"grid": grid.name, **record}
    row |= latent_classes(grid / record["checkpoint"])
    path = evaluations / grid.name / record["id"] / ("evaluation.json" if split == "test" else f"evaluation_{split}.json")
    if not path.is_file():
        return row | {"evaluated": False}
    e = json.loads(path.read_text())
    if e["split"] != split:
        sys.exit(f"{path}: measured on the {e['split']} split, not {split}")
    fids, kids, accuracy, shapes = e["fid"], e["kid"], e["accuracy"], e["morphology"]
    classes = list(shapes["reconstructions"])
    return row | {
        "evaluated": True, "split_ssim": e["ssim"]["mean"], "eval_n": fids["n"], "floor_fid": fids["floor"], "recon_fid": fids["reconstructions"],
        "recon_kid": 1e3 * kids["reconstructions"]["mean"], "normal_fid": fids["samplers"]["normal"],
        "normal_kid": 1e3 * kids["samplers"]["normal"]["mean"], "class_fid": fids["samplers"]["gmm"],
        "class_kid": 1e3 * kids["samplers"]["gmm"]["mean"],
        "kept_per_class": e["samplers"]["kept"]["gmm"], "kept": float(np.mean(list(e["samplers"]["kept"]["gmm"].values()))),
        "collapsed": {k: c["collapsed"] for k, c in e["samplers"]["collapse"]["gmm"].items() if c["collapsed"]},
        "spread": {k: c["spread"] for k, c in e["samplers"]["collapse"]["gmm"].items()},
        "apart_recon": accuracy["reconstruction_judge"]["val"],
        "apart_samples": accuracy["reconstruction_judge"]["samplers"]["gmm"]["overall"],
        "real_judge_recon": accuracy["reconstructions"]["overall"],
        "real_judge_samples": accuracy["samplers"]["gmm"]["overall"],
        "morph_recon": float(np.mean([shapes["reconstructions"][k]["mean_ratio"] for k in classes])),
        "morph_samples": float(np.mean([shapes["samplers"]["gmm"][k]["mean_ratio"] for k in classes])),
        "morph_samples_per_class": {k: shapes["samplers"]["gmm"][k]["mean_ratio"] for k in classes},
        "morph_failures": shapes["failures"]}


_galaxies = {}


def latent_classes(checkpoint):
    """The seed the checkpoint trained (and drew its split) with, and how far its latents keep the classes
    apart before any sampler draws: the class model that the class samplers kept their draws by when the
    study's evaluations ran (a logistic regression, fitted to the training latents; samplers.latent_class_model
    is an MLP since), scored on the validation galaxies' latents: its accuracy, and the share of each class
    it is sure of at p >= 0.95. That share is what a sampler that draws like the real latents can keep."""
    model, saved = load_checkpoint(checkpoint, "cpu")
    key = (saved["config"]["data"], saved["config"]["seed"])
    if key not in _galaxies:
        _galaxies[key] = checkpoint_galaxies(saved, progress=False)
    galaxies = _galaxies[key]
    train_z = encode_means(model, galaxies.train_x).double().numpy()
    classifier = LogisticRegression(max_iter=1000).fit(train_z, galaxies.train_y.numpy())
    z, y = encode_means(model, galaxies.val_x).double().numpy(), galaxies.val_y.numpy()
    sure = classifier.predict_proba(z)
    columns = list(classifier.classes_)
    per_class = {str(k): float(np.mean(sure[y == k, columns.index(k)] >= CLASS_CONFIDENCE)) for k in columns}
    return {"seed": saved["config"]["seed"], "latent_accuracy": float(np.mean(classifier.predict(z) == y)),
            "real_sure_per_class": per_class,
            "real_sure": float(np.mean(list(per_class.values())))}


def cell(value, digits=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if abs(value) < 1e-6:
        return "0"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.1f}"


def grid_tables(rows):
    """One markdown table per metric: beta down, latent across."""
    betas, latents = sorted({r["beta"] for r in rows}), sorted({r["latent"] for r in rows})
    at = {(r["beta"], r["latent"]): r for r in rows}
    for key, (what, higher) in METRICS.items():
        print(f"\n**{what}** ({'higher' if higher else 'lower'} is better)\n")
        print("| beta \\ latent | " + " | ".join(map(str, latents)) + " |")
        print("| --- " * (len(latents) + 1) + "|")
        for b in betas:
            print(f"| {b:g} | " + " | ".join(cell(at.get((b, z), {}).get(key)) for z in latents) + " |")


def correlations(rows):
    """Spearman's rho of each metric with beta (over all configurations, and within each latent size: the
    median and range) and with the latent size (likewise within each beta)."""
    print("\n| metric | rho with beta (all) | within each latent: median [min, max] | rho with latent (all) "
          "| within each beta: median [min, max] |")
    print("| --- | --- | --- | --- | --- |")
    for key, (what, _) in METRICS.items():
        cells = []
        for axis, other in (("beta", "latent"), ("latent", "beta")):
            usable = [r for r in rows if r.get(key) is not None]
            rho = spearmanr([r[axis] for r in usable], [r[key] for r in usable])[0] if len(usable) > 2 else math.nan
            inner = []
            for value in sorted({r[other] for r in usable}):
                group = [r for r in usable if r[other] == value]
                if len(group) > 2:
                    warnings.simplefilter("ignore", ConstantInputWarning)  # rho is nan there, and left out
                    inner.append(spearmanr([r[axis] for r in group], [r[key] for r in group])[0])
            inner = [x for x in inner if math.isfinite(x)]
            cells += [f"{rho:+.2f}", f"{np.median(inner):+.2f} [{min(inner):+.2f}, {max(inner):+.2f}]" if inner else "-"]
        print(f"| {what} | " + " | ".join(cells) + " |")


def pareto_front(rows, x="fid", y="val_ssim"):
    """The configurations no other one beats on both: lower x (FID) and higher y (SSIM)."""
    return [r for r in rows if not any(o[x] <= r[x] and o[y] >= r[y] and (o[x], o[y]) != (r[x], r[y]) for o in rows)]


def knee(front, rows, x="fid", y="val_ssim"):
    """The front's point nearest the ideal corner (best FID, best SSIM of all rows), each axis scaled to its
    range over the rows: the compromise the seed's fourth claim asks for."""
    xs, ys = [r[x] for r in rows], [r[y] for r in rows]
    def distance(r):
        return math.hypot((r[x] - min(xs)) / (max(xs) - min(xs)), (max(ys) - r[y]) / (max(ys) - min(ys)))
    return min(front, key=distance)


def weights_that_pick(target, rows, weights):
    """The loss weights w of `weights` whose w * val_loss + FID ranks `target` first."""
    return [w for w in weights if min(rows, key=lambda r: score(r, w))["id"] == target["id"]]


def over_seeds(rows, reference):
    """The configurations trained at several seeds: each metric per seed, mean +- sd, and the mean +- sd of
    its difference from `reference` (a config key) at the same seed (the seed also draws the split, which
    moves every configuration of that seed alike)."""
    groups = {}
    for r in rows:
        groups.setdefault(key_of(r), {})[r["seed"]] = r
    groups = {k: g for k, g in groups.items() if len(g) > 1}
    names = sorted(groups, key=lambda k: (k != reference, k))
    print("\n| metric | " + " | ".join(f"{name_of(k)}: per seed; mean +- sd" + ("" if k == reference else "; minus the "
                                        "seed's") for k in names) + " |")
    print("| --- " * (1 + len(names)) + "|")
    for key, (what, _) in METRICS.items():
        cells = []
        for k in names:
            seeds = sorted(groups[k])
            values = [groups[k][s].get(key) for s in seeds]
            known = [v for v in values if v is not None]
            text = " / ".join(cell(v) for v in values)
            if len(known) > 1:
                text += f"; {cell(float(np.mean(known)))} +- {cell(float(np.std(known, ddof=1)))}"
            if k != reference:
                diffs = [groups[k][s][key] - groups[reference][s][key] for s in seeds if s in groups[reference]
                         and groups[k][s].get(key) is not None and groups[reference][s].get(key) is not None]
                if len(diffs) > 1:
                    text += f"; {cell(float(np.mean(diffs)))} +- {cell(float(np.std(diffs, ddof=1)))}"
            cells.append(text)
        print(f"| {what} | " + " | ".join(cells) + " |")


def key_of(row):
    return row["recon_loss"], row["beta"], row["latent"]


def name_of(key):
    return f"{key[0].upper()}, beta {key[1]:g}, latent {key[2]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grids", nargs="+", type=Path, help="grid_search.py --out folders")
    parser.add_argument("--evaluations", type=Path, required=True, help="EVALS: the validation evaluations' root")
    parser.add_argument("--figure", type=Path, help="trade-off figure of the first grid, with the class sampler's FID "
                        "(the pick ringed: the first --loss-weights')")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--test", type=Path, metavar="DIR", help="also the configurations evaluated once on the "
                        "test split at the end (generate.py --evaluate's evaluation.json in DIR/<grid>/<id>): "
                        "their table over the seeds")
    parser.add_argument("--loss-weights", type=float, nargs="+", required=True, metavar="W",
                        help="the w of each pick shown (grid_search.py --loss-weight's)")
    args = parser.parse_args()
    grids = {}
    for grid in args.grids:
        grids[grid.name] = [row_of(r, grid, args.evaluations) for r in grid_rows(grid)]
        missing = sum(not r["evaluated"] for r in grids[grid.name])
        print(f"{grid}: {len(grids[grid.name])} configurations finished, {missing} of them not evaluated")
    main_rows = grids[args.grids[0].name]
    grid_tables(main_rows)
    correlations(main_rows)
    front = sorted(pareto_front(main_rows), key=lambda r: r["fid"])
    print("\n- Pareto front (validation SSIM against the N(0, I) FID), best FID first: "
          + ", ".join(f"latent {r['latent']} beta {r['beta']:g} ({r['val_ssim']:.3f}, {r['fid']:.1f})" for r in front))
    for w in args.loss_weights:
        pick = min(main_rows, key=lambda r: score(r, w))
        print(f"- the grid's pick at w = {w:.4g}: latent {pick['latent']} beta {pick['beta']:g} "
              f"(SSIM {pick['val_ssim']:.3f}, FID {pick['fid']:.1f}); on the front: {pick in front}")
    best = knee(front, main_rows)
    weights = np.geomspace(1e-4, 10, 201)
    chosen = weights_that_pick(best, main_rows, weights)
    print(f"- the knee: latent {best['latent']} beta {best['beta']:g} (SSIM {best['val_ssim']:.3f}, FID {best['fid']:.1f}); "
          + (f"w * loss + FID picks it for w in [{min(chosen):.3g}, {max(chosen):.3g}]" if chosen
             else "no w in [1e-4, 10] picks it"))
    if len(args.grids) > 1:
        seeds = {}  # one row per configuration and seed: the loss study's seed 0 trains the grid's seed 0 again
        for rows in grids.values():
            for r in rows:
                seeds.setdefault((key_of(r), r["seed"]), r)
        over_seeds(list(seeds.values()), ("ssim", 1.0, 32))
    if args.test:
        tested = [row_of(r, grid, args.test, "test") for grid in args.grids for r in grid_rows(grid)]
        tested = {(key_of(r), r["seed"]): r for r in reversed(tested) if r["evaluated"]}  # the first grid's first
        print("\nThe test split, once at the end:")
        over_seeds(list(tested.values()), ("ssim", 1.0, 32))
        grids["test"] = list(tested.values())
    if args.figure:
        first = min(main_rows, key=lambda r: score(r, args.loss_weights[0]))
        plot_trade_off(main_rows, args.figure, pick=first["id"])
        print(f"wrote {args.figure}")
    if args.json:
        args.json.write_text(json.dumps(grids, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
